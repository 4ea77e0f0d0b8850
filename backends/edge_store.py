"""The vector store on Qdrant Edge: Qdrant's Rust engine inside this process.

One Edge shard per collection, in ``<path>/<collection>/``: HNSW for the dense vector
(``dense``, cosine), an inverted index with IDF for the sparse one (``bm25``), keyword,
integer and float payload indexes for the filters, and a write-ahead log, so a process
killed mid-write loses nothing that an upsert returned for. The collection's model
metadata (Edge has no collection metadata) lives beside the shard in
``<path>/<collection>.json``.

Same payload, ids, filters and hybrid query (prefetch + fusion) as
``backends/qdrant_store.py``. Edge is thread-safe; the shard's WAL lock keeps a second
process (or a second store object) out, which is reported as ``StoreLockedError``.

Index building: upserts land in an appendable (brute-force) segment; :meth:`optimize`
builds the HNSW and merges segments, and runs after an ingestion job, not per upsert.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from backends.store_common import (
    DENSE,
    KEYWORD_FIELDS,
    SPARSE,
    Clauses,
    TranslateErrors,
    check_collection,
    collection_metadata,
    store_held,
)
from core.errors import StoreError
from core.types import (
    Chunk,
    CollectionSpec,
    EmbeddedChunk,
    Hit,
    SearchFilter,
    SearchRequest,
    SparseVector,
    StoreInfo,
)

logger = logging.getLogger(__name__)

ENGINE = "qdrant-edge"
_DISTANCES = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_PAGE = 512


class EdgeStore:
    """A :class:`core.protocols.VectorStore` on ``qdrant-edge-py``."""

    def __init__(
        self, collection: str, *, path: Path, indexing_threshold_kb: int | None = None
    ) -> None:
        """``indexing_threshold_kb``: vectors (in KB) a segment holds before
        :meth:`optimize` builds its HNSW index; None keeps Qdrant's default (10,000 KB,
        about 6,500 384-d vectors). Applies when the collection is created."""
        self._collection = collection
        self._indexing_threshold_kb = indexing_threshold_kb
        self._root = path
        self._dir = path / collection
        self._meta_path = path / f"{collection}.json"
        self._lock = threading.Lock()
        self._shard: qe.EdgeShard | None = None
        if self._dir.exists():
            self._shard = self._open(lambda: qe.EdgeShard.load(str(self._dir)))

    # -- collection --------------------------------------------------------------------
    def ensure_collection(self, spec: CollectionSpec) -> None:
        with self._lock:
            if self._shard is not None:
                meta = self._metadata()
                config = self._shard_config()
                dense = config.get("vectors", {}).get(DENSE) if config else None
                check_collection(
                    self._collection,
                    spec,
                    size=int(dense["size"]) if dense else None,
                    distance=str(dense["distance"]).lower() if dense else None,
                    recorded_embedder=meta.get("embedder"),
                )
                if not meta:  # shard made by hand or metadata lost: record it now
                    self._write_metadata(spec)
                return
            edge_config = qe.EdgeConfig(
                vectors={
                    DENSE: qe.EdgeVectorParams(
                        size=spec.dense_dim, distance=_DISTANCES[spec.distance]
                    )
                },
                sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
                optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self._indexing_threshold_kb)
                if self._indexing_threshold_kb is not None
                else None,
            )
            self._root.mkdir(parents=True, exist_ok=True)
            shard = self._open(lambda: qe.EdgeShard.create(str(self._dir), edge_config))
            with self._errors("create the payload indexes"):
                for name in KEYWORD_FIELDS:
                    shard.update(
                        qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                    )
                shard.update(
                    qe.UpdateOperation.create_field_index(
                        "chunk_index", qe.PayloadSchemaType.Integer
                    )
                )
                shard.update(
                    qe.UpdateOperation.create_field_index("modified_at", qe.PayloadSchemaType.Float)
                )
            self._write_metadata(spec)
            self._shard = shard
            logger.info("created collection %s in %s", self._collection, self._dir)

    def drop(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            shutil.rmtree(self._dir, ignore_errors=True)
            self._meta_path.unlink(missing_ok=True)

    # -- writes ------------------------------------------------------------------------
    def upsert(self, points: Sequence[EmbeddedChunk]) -> None:
        if not points:
            return
        structs = [
            qe.Point(
                p.chunk.id,
                {
                    DENSE: list(p.dense),
                    SPARSE: qe.SparseVector(list(p.sparse.indices), list(p.sparse.values)),
                },
                p.chunk.payload(),
            )
            for p in points
        ]
        with self._errors("write chunks"):
            self._need().update(qe.UpdateOperation.upsert_points(structs))

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        must_not: list[Any] | None = (
            [_match("content_hash", keep_hash)] if keep_hash is not None else None
        )
        selector = qe.Filter(must=[_match("doc_id", doc_id)], must_not=must_not)
        with self._errors(f"delete the chunks of document {doc_id}"):
            self._need().update(qe.UpdateOperation.delete_points_by_filter(selector))

    def set_access(self, doc_id: str, groups: Sequence[str], tags: Sequence[str]) -> None:
        with self._errors(f"update the groups of document {doc_id}"):
            self._need().update(
                qe.UpdateOperation.set_payload_by_filter(
                    qe.Filter(must=[_match("doc_id", doc_id)]),
                    {"groups": list(groups), "tags": list(tags)},
                )
            )

    def optimize(self) -> None:
        """Build the HNSW index and merge segments; blocks until done. Searches keep
        working meanwhile (on the segments being replaced)."""
        with self._errors("build the search index"):
            shard = self._need()
            if shard.optimize():
                shard.flush()
                info = shard.info()
                logger.info(
                    "optimised %s: %d points in %d segments, %d vectors indexed",
                    self._collection,
                    info.points_count,
                    info.segments_count,
                    info.indexed_vectors_count,
                )

    # -- reads -------------------------------------------------------------------------
    def count(self, filter: SearchFilter | None = None) -> int:
        if filter is not None and filter.groups == ():
            return 0
        if self._shard is None:
            return 0
        with self._errors("count chunks"):
            return self._shard.count(qe.CountRequest(filter=_filter(filter), exact=True))

    def chunks(self, doc_id: str, groups: tuple[str, ...] | None = None) -> list[Chunk]:
        if groups == ():
            return []
        scope = _filter(SearchFilter(groups=groups, doc_ids=(doc_id,)))
        records = self._scroll(scope, vectors=False)
        found = [Chunk.from_payload(r.payload or {}) for page in records for r in page]
        return sorted(found, key=lambda c: c.chunk_index)

    def export(self, batch_size: int = _PAGE) -> Iterator[list[EmbeddedChunk]]:
        for page in self._scroll(None, vectors=True, limit=batch_size):
            yield [_embedded(r) for r in page]

    def search(self, request: SearchRequest) -> list[Hit]:
        if request.filter.groups == ():
            return []
        query_filter = _filter(request.filter)
        prefetches: list[qe.Prefetch] | None = None
        query: Any
        if request.mode == "dense":
            query = qe.Query.Nearest(_dense(request), using=DENSE)
        elif request.mode == "sparse":
            query = qe.Query.Nearest(_sparse(request), using=SPARSE)
        else:
            depth = max(request.prefetch_limit, request.limit)
            prefetches = [
                qe.Prefetch(
                    limit=depth,
                    query=qe.Query.Nearest(_dense(request), using=DENSE),
                    filter=query_filter,
                ),
                qe.Prefetch(
                    limit=depth,
                    query=qe.Query.Nearest(_sparse(request), using=SPARSE),
                    filter=query_filter,
                ),
            ]
            query = (
                qe.Fusion.Dbsf()
                if request.fusion == "dbsf"
                else qe.Fusion.Rrf(k=request.rrf_k, weights=list(request.weights))
            )
        with self._errors("search"):
            points = self._need().query(
                qe.QueryRequest(
                    limit=request.limit,
                    query=query,
                    prefetches=prefetches,
                    filter=query_filter,
                    with_payload=True,
                    with_vector=[DENSE] if request.with_dense else False,
                )
            )
        return [
            Hit(
                chunk=Chunk.from_payload(p.payload or {}),
                score=float(p.score),
                dense=_dense_of(p.vector) if request.with_dense else None,
            )
            for p in points
        ]

    def neighbours(
        self, chunk: Chunk, chunk_indexes: Sequence[int], filter: SearchFilter
    ) -> list[Chunk]:
        if not chunk_indexes or filter.groups == ():
            return []
        must: list[Any] = [
            _match("doc_id", chunk.doc_id),
            _match("content_hash", chunk.content_hash),
            qe.FieldCondition(key="chunk_index", match=qe.MatchAny(any=list(chunk_indexes))),
        ]
        base = _filter(filter)
        if base is not None:
            must.append(base)
        found = [
            Chunk.from_payload(r.payload or {})
            for page in self._scroll(qe.Filter(must=must), vectors=False)
            for r in page
        ]
        return sorted(found, key=lambda c: c.chunk_index)

    def info(self) -> StoreInfo:
        meta = self._metadata()
        dim = meta.get("dense_dim")
        indexed = None
        if self._shard is not None:
            with self._errors("read the collection"):
                indexed = self._shard.info().indexed_vectors_count
        return StoreInfo(
            engine=ENGINE,
            location=str(self._root),
            collection=self._collection,
            points=self.count(),
            embedder=meta.get("embedder"),
            dense_dim=int(dim) if dim is not None else None,
            indexed_vectors=indexed,
        )

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                with self._errors("close the store"):
                    self._shard.flush()
                    self._shard.close()
                self._shard = None

    # -- helpers -----------------------------------------------------------------------
    def _open(self, opener: Any) -> qe.EdgeShard:
        try:
            shard: qe.EdgeShard = opener()
        except Exception as exc:  # qdrant-edge raises plain Exception
            if "WouldBlock" in str(exc):
                raise store_held(self._dir) from exc
            raise StoreError(
                f"cannot open the Qdrant Edge store at {self._dir}: {exc}. If the folder is "
                "damaged, restore it from a backup or delete it and ingest again."
            ) from exc
        return shard

    def _need(self) -> qe.EdgeShard:
        if self._shard is None:
            raise StoreError(
                f"collection '{self._collection}' does not exist in {self._root}: "
                "run `enclave ingest` first"
            )
        return self._shard

    def _scroll(
        self, filter: qe.Filter | None, *, vectors: bool, limit: int = _PAGE
    ) -> Iterator[list[qe.Record]]:
        if self._shard is None:
            return
        offset: Any = None
        while True:
            with self._errors("read chunks"):
                records, offset = self._shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=limit,
                        filter=filter,
                        with_payload=True,
                        with_vector=vectors,
                    )
                )
            if records:
                yield records
            if offset is None:
                return

    def _metadata(self) -> dict[str, Any]:
        try:
            data = json.loads(self._meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {self._meta_path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _write_metadata(self, spec: CollectionSpec) -> None:
        tmp = self._meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(collection_metadata(spec), indent=2), encoding="utf-8")
        tmp.replace(self._meta_path)

    def _shard_config(self) -> dict[str, Any]:
        try:
            data = json.loads((self._dir / "edge_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _errors(self, action: str) -> TranslateErrors:
        # qdrant-edge raises plain Exception
        return TranslateErrors(f"cannot {action} in {ENGINE} at {self._dir}", (Exception,))


def _match(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def _filter(spec: SearchFilter | None) -> qe.Filter | None:
    if spec is None:
        return None
    clauses = Clauses.of(spec)
    must: list[Any] = [
        qe.FieldCondition(key=key, match=qe.MatchAny(any=list(values)))
        for key, values in clauses.any_of
    ]
    if clauses.modified is not None:
        gte, lte = clauses.modified
        must.append(qe.FieldCondition(key="modified_at", range=qe.RangeFloat(gte=gte, lte=lte)))
    return qe.Filter(must=must) if must else None


def _dense(request: SearchRequest) -> list[float]:
    if request.dense is None:
        raise StoreError("a dense search needs a dense query vector")
    return list(request.dense)


def _sparse(request: SearchRequest) -> qe.SparseVector:
    if request.sparse is None:
        raise StoreError("a sparse search needs a sparse query vector")
    return qe.SparseVector(list(request.sparse.indices), list(request.sparse.values))


def _dense_of(vector: Any) -> tuple[float, ...] | None:
    value = vector.get(DENSE) if isinstance(vector, dict) else None
    return tuple(float(x) for x in value) if isinstance(value, list) else None


def _embedded(record: qe.Record) -> EmbeddedChunk:
    vector = record.vector if isinstance(record.vector, dict) else {}
    sparse = vector.get(SPARSE)
    dense = _dense_of(vector)
    if dense is None or not isinstance(sparse, qe.SparseVector):
        raise StoreError(f"point {record.id} has no {DENSE} or {SPARSE} vector")
    return EmbeddedChunk(
        Chunk.from_payload(record.payload or {}),
        dense,
        SparseVector(tuple(sparse.indices), tuple(sparse.values)),
    )
