"""How hits, passages and citations are shown: the typed shapes the API documents in its
OpenAPI schema and the command line prints with ``--json``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.types import Hit


class NeighbourOut(BaseModel):
    chunk_index: int
    page: int | None
    text: str


class HitOut(BaseModel):
    """A passage found for a query."""

    doc_id: str
    chunk_id: str
    source: str = Field(description="The document's path or source id.")
    title: str
    page: int | None
    heading_path: list[str]
    chunk_index: int
    score: float | None = Field(
        description="The ranking score (fusion, BM25, cosine or reranker, by mode); null for "
        "keys that are not admin keys: it uses statistics of the whole collection, so its "
        "value could tell whether documents outside the caller's groups contain a word."
    )
    relevance: float | None = Field(
        description="Query-passage cosine similarity (the relevance floor applies to it)."
    )
    text: str
    neighbours: list[NeighbourOut] = Field(
        [], description="Adjacent chunks of the same document, when asked for."
    )

    @classmethod
    def from_domain(cls, hit: Hit, *, scores: bool = True) -> HitOut:
        c = hit.chunk
        return cls(
            doc_id=c.doc_id,
            chunk_id=c.id,
            source=c.source,
            title=c.title,
            page=c.page,
            heading_path=list(c.heading_path),
            chunk_index=c.chunk_index,
            score=round(hit.score, 6) if scores else None,
            relevance=round(hit.relevance, 6) if hit.relevance is not None else None,
            text=c.text,
            neighbours=[
                NeighbourOut(chunk_index=n.chunk_index, page=n.page, text=n.text)
                for n in hit.neighbours
            ],
        )


class PassageOut(HitOut):
    """A passage given to the LLM, numbered as the answer cites it."""

    n: int = Field(description="The block number the answer's [n] markers refer to.")

    @classmethod
    def numbered(cls, hits: tuple[Hit, ...], *, scores: bool) -> list[PassageOut]:
        return [
            cls(n=n, **HitOut.from_domain(h, scores=scores).model_dump())
            for n, h in enumerate(hits, 1)
        ]
