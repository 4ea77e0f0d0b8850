"""Build the concrete components from the settings: the one place that picks adapters."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from backends.registry import Registry
from core.protocols import Embedder, Reranker, SparseEncoder, VectorStore
from core.settings import Settings
from core.types import CollectionSpec


@dataclass
class Container:
    """The components an entry point needs. The embedder loads on first use."""

    settings: Settings
    store: VectorStore
    registry: Registry
    sparse: SparseEncoder
    _embedder: Embedder | None = None
    _reranker: Reranker | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from backends.embedders import SentenceTransformerEmbedder

                self._embedder = SentenceTransformerEmbedder(self.settings.embedder)
            return self._embedder

    @property
    def reranker(self) -> Reranker | None:
        """The configured cross-encoder, or None when reranking is off."""
        if not self.settings.reranker.model:
            return None
        with self._lock:
            if self._reranker is None:
                from backends.rerankers import CrossEncoderReranker

                self._reranker = CrossEncoderReranker(self.settings.reranker)
            return self._reranker

    def collection_spec(self) -> CollectionSpec:
        embedder = self.embedder
        return CollectionSpec(
            name=self.settings.store.collection,
            dense_dim=embedder.dimension,
            distance="cosine",
            embedder=embedder.name,
            sparse_encoder=self.sparse.name,
        )

    def close(self) -> None:
        self.store.close()
        self.registry.close()


def build_store(settings: Settings) -> VectorStore:
    """The vector store the settings name: a Qdrant server by URL, else embedded."""
    from backends.qdrant_store import QdrantStore

    s = settings.store
    if s.url:
        return QdrantStore(
            s.collection,
            url=s.url,
            api_key=s.api_key.get_secret_value() if s.api_key else None,
            timeout_s=s.timeout_s,
        )
    return QdrantStore(s.collection, path=settings.store_path)


def build_container(settings: Settings, embedder: Embedder | None = None) -> Container:
    """Open the store and registry; ``embedder`` overrides the configured one (tests)."""
    from backends.sparse import Bm25Encoder

    store = build_store(settings)
    try:
        registry = Registry(settings.database_url)
    except Exception:
        store.close()
        raise
    return Container(
        settings=settings,
        store=store,
        registry=registry,
        sparse=Bm25Encoder(settings.sparse),
        _embedder=embedder,
    )
