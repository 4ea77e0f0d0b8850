"""The swappable roles. Implementations live in ``backends/``; only domain types cross.

Each docstring is the contract that the tests in ``tests/contracts`` check against
every implementation.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from core.types import (
    Chunk,
    CollectionSpec,
    EmbeddedChunk,
    Hit,
    SearchFilter,
    SearchRequest,
    SparseVector,
    StoreInfo,
    Usage,
)


@runtime_checkable
class Embedder(Protocol):
    """Turns text into dense vectors.

    ``name`` identifies the model (recorded in the collection, so a model swap is
    detected); ``dimension`` is the vector length; ``max_tokens`` the model's input
    window including special tokens. Vectors are L2-normalised.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the model's window, without special tokens."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """One normalised vector per text, in order; batched internally."""
        ...

    def embed_query(self, text: str) -> tuple[float, ...]:
        """The normalised vector of a search query."""
        ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Turns text into BM25 term-weight vectors with stable token ids.

    Document vectors carry saturated term frequencies; query vectors carry one
    weight per distinct term. The store applies IDF, so the encoder is stateless.
    """

    @property
    def name(self) -> str: ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    def encode_query(self, text: str) -> SparseVector: ...


@runtime_checkable
class VectorStore(Protocol):
    """Holds chunks with a dense and a sparse vector each.

    - ``ensure_collection`` creates the collection or checks that an existing one
      matches the spec; a mismatch raises ``CollectionMismatchError``.
    - ``upsert`` is idempotent: a point with the same id replaces the old one.
    - ``delete_document(doc_id, keep_hash=h)`` removes the document's chunks whose
      ``content_hash`` differs from ``h`` (all of them when ``h`` is None).
    - ``search`` applies ``request.filter`` inside the query: a chunk outside the
      caller's groups is never returned or counted.
    - ``optimize`` builds search indexes after a large batch of writes (an ingestion
      job); cheap when there is nothing to do. Searches work before and during it.
    - ``export`` yields every point with its vectors, in pages (to move a knowledge
      base to another engine without re-embedding).
    - ``drop`` deletes the collection and everything in it.
    - A store that cannot be opened because another process holds it raises
      ``StoreLockedError``.
    """

    def ensure_collection(self, spec: CollectionSpec) -> None: ...

    def upsert(self, points: Sequence[EmbeddedChunk]) -> None: ...

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None: ...

    def set_access(self, doc_id: str, groups: Sequence[str], tags: Sequence[str]) -> None:
        """Replace the groups and tags of every chunk of a document."""
        ...

    def optimize(self) -> None: ...

    def export(self, batch_size: int = 512) -> Iterator[list[EmbeddedChunk]]: ...

    def drop(self) -> None: ...

    def count(self, filter: SearchFilter | None = None) -> int: ...

    def chunks(self, doc_id: str, groups: tuple[str, ...] | None = None) -> list[Chunk]:
        """Every chunk of a document, ordered by ``chunk_index``; with ``groups``, only
        the chunks that share one of them (the caller's access scope, applied inside the
        store query; ``()`` matches nothing, ``None`` is admin scope)."""
        ...

    def neighbours(
        self, chunk: Chunk, chunk_indexes: Sequence[int], filter: SearchFilter
    ) -> list[Chunk]:
        """Chunks of ``chunk``'s document version (same doc id and content hash) at
        ``chunk_indexes`` that pass ``filter``, in index order. Never mixes in another
        version of the document (both exist briefly while it is being replaced)."""
        ...

    def search(self, request: SearchRequest) -> list[Hit]: ...

    def info(self) -> StoreInfo: ...

    def close(self) -> None: ...


@runtime_checkable
class Reranker(Protocol):
    """Re-scores hits for a query (e.g. a cross-encoder).

    Returns the hits ordered by the new score (which replaces ``Hit.score``), best first.
    """

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


@runtime_checkable
class Generator(Protocol):
    """Writes text from chat messages (OpenAI-style ``role``/``content`` dicts).

    - ``name`` is what clients call the model; ``context_window`` its window in tokens;
      ``role`` is ``small`` or ``large`` (the router sends complex questions to ``large``).
    - ``check`` raises ``LLMUnavailableError`` when the server cannot be reached and
      ``ConfigError`` when it does not serve the model.
    - ``stream`` yields the text as it is generated, then one ``Usage``. Closing the
      iterator early stops the generation. A server that cannot be reached (after
      retries), times out or fails mid-answer raises ``LLMUnavailableError``.
    - ``astream`` is the same without holding a thread while the server writes (the API
      serves many slow answers at once); ``aclose`` releases what it opened.
    """

    @property
    def name(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    @property
    def role(self) -> str: ...

    def check(self) -> None: ...

    def stream(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float = 0.1
    ) -> abc.Generator[str | Usage, None, None]: ...

    def astream(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float = 0.1
    ) -> abc.AsyncGenerator[str | Usage, None]: ...

    async def aclose(self) -> None: ...
