"""Domain types: the only things that cross a seam between layers.

Plain frozen dataclasses, no vendor objects. A :class:`Chunk` carries everything
its payload in the store holds, so any store can round-trip it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import InputError

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["dbsf", "rrf"]

_GROUP_NAME = re.compile(r"[\w.@:-]{1,64}")
GROUP_NAME_RULE = "1-64 letters, digits, '_', '-', '.', '@' or ':'"


def group_names(values: Iterable[str], what: str = "group") -> tuple[str, ...]:
    """Group names, stripped, checked and deduplicated in order: the one rule for group
    names everywhere (command line, API, keys, access rules). A name no key could hold
    (``"hr team"``) is an :class:`InputError` naming it, never silently kept."""
    if isinstance(values, str):
        raise InputError(f"{what}s must be a list of group names, not one string")
    clean: list[str] = []
    for value in values:
        name = value.strip() if isinstance(value, str) else ""
        if not _GROUP_NAME.fullmatch(name):
            raise InputError(f"invalid {what} name {value!r}: use {GROUP_NAME_RULE}")
        if name not in clean:
            clean.append(name)
    return tuple(clean)


@dataclass(frozen=True, slots=True)
class SparseVector:
    """A sparse vector: token ids and weights (IDF is applied by the store)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """One source document as the registry knows it."""

    doc_id: str
    source: str
    title: str
    content_hash: str
    modified_at: float
    mime_type: str
    size_bytes: int
    groups: tuple[str, ...]
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A retrievable passage of a document, with its document's metadata."""

    id: str
    doc_id: str
    source: str
    title: str
    text: str
    chunk_index: int
    pages: tuple[int, ...]
    heading_path: tuple[str, ...]
    content_hash: str
    modified_at: float
    mime_type: str
    groups: tuple[str, ...]
    tags: tuple[str, ...] = ()

    @property
    def page(self) -> int | None:
        """The first page the chunk is on, if the format has pages."""
        return self.pages[0] if self.pages else None

    @property
    def embedding_text(self) -> str:
        """What the embedders see: title and heading path, then the passage."""
        header = " > ".join(h for h in (self.title, *self.heading_path) if h)
        return f"{header}\n{self.text}" if header else self.text

    def payload(self) -> dict[str, Any]:
        """The chunk as a JSON-able mapping (the store payload)."""
        data = asdict(self)
        for key in ("pages", "heading_path", "groups", "tags"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Chunk:
        """Rebuild a chunk from :meth:`payload`'s output."""
        return cls(
            id=str(payload["id"]),
            doc_id=str(payload["doc_id"]),
            source=str(payload["source"]),
            title=str(payload["title"]),
            text=str(payload["text"]),
            chunk_index=int(payload["chunk_index"]),
            pages=tuple(int(p) for p in payload.get("pages", ())),
            heading_path=tuple(str(h) for h in payload.get("heading_path", ())),
            content_hash=str(payload["content_hash"]),
            modified_at=float(payload["modified_at"]),
            mime_type=str(payload["mime_type"]),
            groups=tuple(str(g) for g in payload.get("groups", ())),
            tags=tuple(str(t) for t in payload.get("tags", ())),
        )


@dataclass(frozen=True, slots=True)
class EmbeddedChunk:
    """A chunk with its dense and sparse vectors, ready to upsert."""

    chunk: Chunk
    dense: tuple[float, ...]
    sparse: SparseVector


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Restrictions applied inside the store query.

    ``groups`` is the access-control boundary: a chunk matches only when it shares
    at least one group with the caller. ``None`` means admin scope (everything);
    an empty tuple matches nothing.
    """

    groups: tuple[str, ...] | None
    doc_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    mime_types: tuple[str, ...] = ()
    modified_after: float | None = None
    modified_before: float | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One query against the store, with vectors already computed."""

    mode: SearchMode
    limit: int
    filter: SearchFilter
    dense: tuple[float, ...] | None = None
    sparse: SparseVector | None = None
    prefetch_limit: int = 100
    fusion: Fusion = "dbsf"
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)  # dense, sparse (RRF only)
    with_dense: bool = False  # return each hit's dense vector


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found by a search, with its score (higher is better).

    ``score`` orders the results (fusion, BM25, cosine or reranker score, by mode);
    ``relevance`` is the query-chunk cosine similarity, comparable across modes and
    queries (the relevance floor applies to it); ``neighbours`` are adjacent chunks
    of the same document, added for context when asked for.
    """

    chunk: Chunk
    score: float
    relevance: float | None = None
    neighbours: tuple[Chunk, ...] = ()
    dense: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class AccessRule:
    """Who may read the documents under a path or source prefix: the durable access
    state. A document's groups are those of the most specific rule covering its source;
    a document no rule covers is visible to admins only."""

    prefix: str
    groups: tuple[str, ...]
    updated_at: float = 0.0
    updated_by: str = ""
    origin: str = "admin"  # admin | upload | upgrade

    def covers(self, source: str) -> bool:
        """Whether ``source`` is the prefix itself or lies under it (whole path parts)."""
        return covers(self.prefix, source)


def covers(prefix: str, source: str) -> bool:
    """Whether ``source`` equals ``prefix`` or lies under it, at a ``/`` boundary."""
    if source == prefix:
        return True
    base = prefix if prefix.endswith("/") else prefix + "/"
    return source.startswith(base)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a name and the groups they hold. ``admin`` sees every document."""

    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """The shape a collection must have for the configured models."""

    name: str
    dense_dim: int
    distance: Literal["cosine", "dot", "euclid"]
    embedder: str
    sparse_encoder: str


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What ``enclave status`` shows about the store."""

    engine: str
    location: str
    collection: str
    points: int
    embedder: str | None
    dense_dim: int | None
    indexed_vectors: int | None = None  # dense + sparse vectors in built indexes (Edge)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a generation used (as the LLM server counted them, or estimated)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Citation:
    """A numbered reference from an answer to a passage."""

    n: int
    doc_id: str
    source: str
    title: str
    page: int | None
    quote: str


@dataclass(frozen=True, slots=True)
class Claim:
    """A sentence of an answer, checked by the system: the passage span that supports it
    (``n``, chunk, page, offsets in the chunk's text, the quote verbatim), or
    ``supported`` False. ``start``/``end``: where the sentence stands in the answer;
    ``score``: the share of its content words the span holds."""

    text: str
    start: int
    end: int
    supported: bool
    score: float
    n: int | None = None
    chunk_id: str | None = None
    doc_id: str | None = None
    page: int | None = None
    quote: str | None = None
    quote_start: int | None = None
    quote_end: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer with its citations, its checked claims and the passages it was given."""

    text: str
    citations: tuple[Citation, ...]
    passages: tuple[Hit, ...] = field(default_factory=tuple)
    model: str = ""
    claims: tuple[Claim, ...] = ()
