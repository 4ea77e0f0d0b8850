"""Wiring and presenting search for every entry point (CLI, API, evaluation)."""

from __future__ import annotations

from typing import Any

from backends.container import Container
from core.types import Hit, Principal
from retrieval.search import Retriever

LOCAL_ADMIN = Principal(name="local administrator (CLI)", admin=True)
"""Who the command line acts as: whoever can run it can read the store's files anyway."""


def build_retriever(container: Container) -> Retriever:
    """A Retriever on the container's store and models, with the configured reranker."""
    return Retriever(
        container.store,
        container.embedder,
        container.sparse,
        container.settings.retrieval,
        reranker=container.reranker,
        rerank_depth=container.settings.reranker.depth,
        spec=container.collection_spec(),
    )


def hit_json(hit: Hit, *, scores: bool = True) -> dict[str, Any]:
    """A hit as the CLI's ``--json`` and the API show it. Without ``scores`` (any caller
    but an admin) ``score`` is null: it is computed with statistics over the whole
    collection (BM25's IDF), so its value could tell whether documents outside the
    caller's groups contain a word. ``relevance`` (query-passage cosine) depends only on
    the passage and stays."""
    c = hit.chunk
    data: dict[str, Any] = {
        "doc_id": c.doc_id,
        "chunk_id": c.id,
        "source": c.source,
        "title": c.title,
        "page": c.page,
        "heading_path": list(c.heading_path),
        "chunk_index": c.chunk_index,
        "score": round(hit.score, 6) if scores else None,
        "relevance": round(hit.relevance, 6) if hit.relevance is not None else None,
        "text": c.text,
    }
    if hit.neighbours:
        data["neighbours"] = [
            {"chunk_index": n.chunk_index, "page": n.page, "text": n.text} for n in hit.neighbours
        ]
    return data
