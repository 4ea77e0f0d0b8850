"""Copy a knowledge base's chunks, vectors included, from one vector store to another.

Nothing is parsed or embedded again: points keep their ids, payloads and vectors, so
the SQL registry stays valid for the target. The source is read, never changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import InputError, StoreError
from core.protocols import VectorStore
from core.types import CollectionSpec


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
    batch_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy every point of ``source`` into ``target`` (created with the source's model
    metadata), build the target's index, and check that the counts agree.

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
    if info.embedder is None or info.dense_dim is None:
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
    spec = CollectionSpec(info.collection, info.dense_dim, "cosine", info.embedder, sparse_encoder)
    target.ensure_collection(spec)
    copied = 0
    for page in source.export(batch_size):
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
