"""Copy a knowledge base's chunks, vectors included, from one vector store to another.

Nothing is parsed again: points keep their ids, payloads and sparse vectors, so the
SQL registry stays valid for the target. The dense vectors are copied (``enclave
migrate``) or computed again with another embedder (``enclave reindex``). The source
is read, never changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import InputError, StoreError
from core.protocols import Embedder, VectorStore
from core.types import CollectionSpec, EmbeddedChunk


@dataclass(frozen=True, slots=True)
class MigrationReport:
    points: int
    seconds: float
    index_seconds: float


def migrate(
    source: VectorStore,
    target: VectorStore,
    sparse_encoder: str,
    *,
    replace: bool = False,
    embedder: Embedder | None = None,
    batch_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy every point of ``source`` into ``target`` (created with the source's model
    metadata), build the target's index, and check that the counts agree.

    With ``embedder``, each chunk's dense vector is computed again by it (from the
    same text ingestion embedded) and the target records that embedder instead.

    A target that already holds points is refused unless ``replace`` (then it is
    dropped first): a migration interrupted half-way is repeated with ``replace``.
    """
    started = time.perf_counter()
    info = source.info()
    if info.points == 0:
        raise InputError(
            f"collection '{info.collection}' in {info.engine} at {info.location} is empty "
            "or missing: nothing to migrate (check ENCLAVE_STORE__* and ENCLAVE_DATA_DIR)"
        )
    model, dim = (
        (embedder.name, embedder.dimension) if embedder else (info.embedder, info.dense_dim)
    )
    if model is None or dim is None:
        raise StoreError(
            f"collection '{info.collection}' in {info.engine} does not record its embedder; "
            "ingest into it once with the current version, then migrate"
        )
    existing = target.info()
    if existing.points and not replace:
        raise InputError(
            f"the target ({existing.engine} at {existing.location}) already holds "
            f"{existing.points} chunks in collection '{existing.collection}' (an earlier or "
            "interrupted migration?): run again with --replace to rebuild it from the source"
        )
    if replace:
        target.drop()
    target.ensure_collection(
        CollectionSpec(existing.collection, dim, "cosine", model, sparse_encoder)
    )
    copied = 0
    for page in source.export(batch_size):
        if embedder is not None:
            dense = embedder.embed_documents([p.chunk.embedding_text for p in page])
            page = [EmbeddedChunk(p.chunk, d, p.sparse) for p, d in zip(page, dense, strict=True)]
        target.upsert(page)
        copied += len(page)
        if progress is not None:
            progress(copied, info.points)
    index_started = time.perf_counter()
    target.optimize()
    index_seconds = time.perf_counter() - index_started
    landed = target.count()
    if landed != copied or copied != info.points:
        raise StoreError(
            f"migration copied {copied} chunks but the target holds {landed} and the source "
            f"{info.points}; run again with --replace"
        )
    return MigrationReport(copied, time.perf_counter() - started, index_seconds)
