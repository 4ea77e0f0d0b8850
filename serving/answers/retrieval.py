"""Wiring retrieval and answers on a container, for every entry point."""

from __future__ import annotations

from backends.container import Container
from core.types import Principal
from retrieval.search import Retriever
from serving.answers.answerer import Answerer
from serving.answers.router import Router

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


def local_answerer(container: Container) -> Answerer:
    """An Answerer on the container's store and LLMs (starting the embedded one if needed)."""
    settings = container.settings
    return Answerer(
        build_retriever(container), Router(container.generators(), settings.llm), settings.llm
    )
