"""Build the concrete components from the settings: the one place that picks adapters."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, cast

from backends.sql.registry import Registry
from backends.sql.schema import open_engine
from core.errors import StoreError, StoreLockedError
from core.protocols import Embedder, Reranker, SparseEncoder, VectorStore
from core.runtime import private_dir
from core.settings import Settings
from core.types import CollectionSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from backends.generators import OpenAICompatibleGenerator
    from backends.llama_server import EmbeddedLlamaServer

logger = logging.getLogger(__name__)


class _NoStore:
    """Stands in for the store where none is open (a queue worker outside its write phase,
    a command that reads only the database): using it is a bug."""

    def close(self) -> None:
        return None

    def __getattr__(self, name: str) -> NoReturn:
        raise StoreError(f"internal error: the store was used outside a write phase ({name})")


NO_STORE = cast(VectorStore, _NoStore())


@dataclass
class Container:
    """The components an entry point needs. The embedder loads on first use."""

    settings: Settings
    store: VectorStore
    database: Engine  # the SQL database: the registry's, and the API's tables (one engine)
    registry: Registry
    sparse: SparseEncoder
    collection: str  # the physical collection behind settings.store.collection
    _embedder: Embedder | None = None
    _reranker: Reranker | None = None
    _generators: dict[str, OpenAICompatibleGenerator] | None = None
    _llama: EmbeddedLlamaServer | None = None
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

    def generators(self) -> dict[str, OpenAICompatibleGenerator]:
        """The configured LLMs by name; with none configured, the embedded llama.cpp
        server is started (once) and serves as the only model."""
        with self._lock:
            if self._generators is None:
                self._generators = self._build_generators()
            return self._generators

    def _build_generators(self) -> dict[str, OpenAICompatibleGenerator]:
        from backends.generators import OpenAICompatibleGenerator
        from core.settings import ModelSettings

        llm = self.settings.llm
        models = list(llm.models)
        if not models:
            from backends.llama_server import EmbeddedLlamaServer, resolve_gguf

            data = self.settings.data_dir
            name, gguf = resolve_gguf(llm.embedded_model, data / "models")
            self._llama = EmbeddedLlamaServer(
                gguf,
                name,
                context_window=llm.embedded_context_window,
                threads=llm.embedded_threads,
                log_path=data / "logs" / "llama-server.log",
            )
            base_url = self._llama.start()
            models = [
                ModelSettings(
                    name=name,
                    base_url=base_url,
                    base_urls=[],
                    served_name=None,
                    context_window=llm.embedded_context_window,
                    role="small",
                    api_key=None,
                )
            ]
        return {m.name: OpenAICompatibleGenerator(m, llm) for m in models}

    @property
    def embedded_llm(self) -> EmbeddedLlamaServer | None:
        """The supervised llama.cpp server, when one was started."""
        return self._llama

    def collection_spec(self, collection: str | None = None) -> CollectionSpec:
        """The spec of ``collection`` (default: the container's) for this embedder."""
        embedder = self.embedder
        return CollectionSpec(
            name=collection or self.collection,
            dense_dim=embedder.dimension,
            distance="cosine",
            embedder=embedder.name,
            sparse_encoder=self.sparse.name,
        )

    def close(self) -> None:
        if self._generators:
            for generator in self._generators.values():
                generator.close()
        if self._llama is not None:
            self._llama.stop()
        self.store.close()
        self.registry.close()
        self.database.dispose()


def build_store(settings: Settings, collection: str | None = None) -> VectorStore:
    """The vector store the settings name: a Qdrant server by URL, else the embedded
    engine (Qdrant Edge, or qdrant-client's local mode)."""
    s = settings.store
    name = collection or s.collection
    if not s.url and s.engine == "edge":
        from backends.edge_store import EdgeStore

        return EdgeStore(name, path=settings.store_path)  # thread-safe
    from backends.qdrant_store import QdrantStore

    if s.url:
        return QdrantStore(
            name,
            url=s.url,
            api_key=s.api_key.get_secret_value() if s.api_key else None,
            timeout_s=s.timeout_s,
            shards=s.shards,
            replication_factor=s.replication_factor,
        )
    return cast(VectorStore, _Serialized(QdrantStore(name, path=settings.store_path)))


class _Serialized:
    """One call at a time into an embedded store: qdrant-client's local mode is not
    thread-safe, and the API serves searches while an ingestion job writes."""

    def __init__(self, store: object) -> None:
        self._store = store
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def serialized(*args: object, **kwargs: object) -> object:
            with self._lock:
                return attr(*args, **kwargs)

        return serialized


class _WaitingStore:
    """An embedded store another process holds: each call tries to open it (at most once
    a second; in between the last ``StoreLockedError`` is raised again), and once it
    opens, every call goes to it. Only ``enclave serve`` uses this, so that the API
    starts, answers 503 on what needs the store, and recovers when the store is free."""

    _RETRY_S = 1.0

    def __init__(self, opener: Callable[[], VectorStore], error: StoreLockedError) -> None:
        self._opener = opener
        self._store: VectorStore | None = None
        self._error = str(error)
        self._retry_at = time.monotonic() + self._RETRY_S
        self._closed = False
        self._lock = threading.Lock()

    def _open(self) -> VectorStore:
        with self._lock:
            if self._store is not None:
                return self._store
            if self._closed:
                raise StoreError("the store is closed")
            if time.monotonic() < self._retry_at:
                raise StoreLockedError(self._error)
            self._retry_at = time.monotonic() + self._RETRY_S
            try:
                self._store = self._opener()
            except StoreLockedError as exc:
                self._error = str(exc)
                raise
            logger.warning("the embedded store is free again: opened it")
            return self._store

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):  # never the store's privates (nor ours before __init__)
            raise AttributeError(name)
        return getattr(self._open(), name)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._store is not None:
                self._store.close()


def build_container(
    settings: Settings,
    embedder: Embedder | None = None,
    *,
    wait_for_store: bool = False,
    store: VectorStore | None = None,
) -> Container:
    """Open the store and registry; ``embedder`` overrides the configured one (tests);
    ``store`` replaces the configured store (ingestion workers open it only to write).

    With ``wait_for_store`` (``enclave serve``), an embedded store held by another
    process is not an error here: the container's store raises ``StoreLockedError``
    until the store is free, then opens it (see :class:`_WaitingStore`)."""
    from backends.sparse import Bm25Encoder

    with contextlib.suppress(OSError):  # an unusable data dir is reported by what opens it
        private_dir(settings.data_dir)
    database = open_engine(settings.database_url)
    registry = Registry(database)
    collection = registry.active_collection(settings.store.collection)
    try:
        try:
            if store is None:
                store = build_store(settings, collection)
        except StoreLockedError as exc:
            if not wait_for_store:
                raise
            logger.warning("%s; waiting for it (store requests fail until then)", exc)
            store = cast(VectorStore, _WaitingStore(lambda: build_store(settings, collection), exc))
    except Exception:
        database.dispose()
        raise
    return Container(
        settings=settings,
        store=store,
        database=database,
        registry=registry,
        sparse=Bm25Encoder(settings.sparse),
        collection=collection,
        _embedder=embedder,
    )
