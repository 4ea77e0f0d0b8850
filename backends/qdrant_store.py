"""The vector store on qdrant-client: embedded (local folder) or a Qdrant server.

One collection with a named dense vector (``dense``, cosine) and a named sparse
vector (``bm25``, ``Modifier.IDF``). The collection's metadata records the
embedder name, dimension and sparse encoder; :meth:`QdrantStore.ensure_collection`
refuses to mix vectors from different models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

# what qdrant-client and its transports raise
_ERRORS = (
    UnexpectedResponse,
    ResponseHandlingException,
    ConnectionError,
    TimeoutError,
    OSError,
    ValueError,
    RuntimeError,
)
_DISTANCES = {
    "cosine": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euclid": models.Distance.EUCLID,
}


class QdrantStore:
    """A :class:`core.protocols.VectorStore` on qdrant-client."""

    def __init__(
        self,
        collection: str,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        shards: int = 1,
        replication_factor: int = 1,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path (embedded) or url (server)")
        self._collection = collection
        self._shards, self._replication = shards, replication_factor
        self._location = str(path) if path is not None else str(url)
        self._engine = "qdrant-local" if path is not None else "qdrant-server"
        try:
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
            else:
                # no version probe in a background thread (it only warns); compose.yaml
                # pins a server version this client supports
                self._client = QdrantClient(
                    url=url, api_key=api_key, timeout=int(timeout_s), check_compatibility=False
                )
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise store_held(path) from exc
            raise StoreError(f"cannot open the Qdrant store at {self._location}: {exc}") from exc

    # -- collection --------------------------------------------------------------------
    def ensure_collection(self, spec: CollectionSpec) -> None:
        metadata = collection_metadata(spec)
        with self._errors("create or check the collection"):
            if not self._client.collection_exists(self._collection):
                self._client.create_collection(
                    self._collection,
                    vectors_config={
                        DENSE: models.VectorParams(
                            size=spec.dense_dim, distance=_DISTANCES[spec.distance]
                        )
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                    metadata=metadata,
                    # distributed mode (a server; local mode has neither)
                    shard_number=self._shards if self._engine == "qdrant-server" else None,
                    replication_factor=(
                        self._replication if self._engine == "qdrant-server" else None
                    ),
                )
                if self._engine == "qdrant-local":  # payload indexes are no-ops there
                    logger.info("created collection %s (%s)", self._collection, metadata)
                    return
                for name in KEYWORD_FIELDS:
                    self._client.create_payload_index(
                        self._collection, name, models.PayloadSchemaType.KEYWORD
                    )
                self._client.create_payload_index(
                    self._collection, "modified_at", models.PayloadSchemaType.FLOAT
                )
                self._client.create_payload_index(
                    self._collection, "chunk_index", models.PayloadSchemaType.INTEGER
                )
                logger.info("created collection %s (%s)", self._collection, metadata)
                return
            info = self._client.get_collection(self._collection)
        self._check(spec, info)

    def _check(self, spec: CollectionSpec, info: models.CollectionInfo) -> None:
        vectors = info.config.params.vectors
        dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
        distances = {v: k for k, v in _DISTANCES.items()}
        check_collection(
            self._collection,
            spec,
            size=dense.size if dense is not None else None,
            distance=distances.get(dense.distance) if dense is not None else None,
            recorded_embedder=(info.config.metadata or {}).get("embedder"),
        )

    # -- writes ------------------------------------------------------------------------
    def upsert(self, points: Sequence[EmbeddedChunk]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(
                id=p.chunk.id,
                vector={
                    DENSE: list(p.dense),
                    SPARSE: models.SparseVector(
                        indices=list(p.sparse.indices), values=list(p.sparse.values)
                    ),
                },
                payload=p.chunk.payload(),
            )
            for p in points
        ]
        with self._errors("write chunks"):
            self._client.upsert(self._collection, points=structs, wait=True)

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        must_not: list[models.Condition] = []
        if keep_hash is not None:
            must_not.append(_match("content_hash", keep_hash))
        selector = models.FilterSelector(
            filter=models.Filter(must=[_match("doc_id", doc_id)], must_not=must_not or None)
        )
        with self._errors(f"delete the chunks of document {doc_id}"):
            self._client.delete(self._collection, points_selector=selector, wait=True)

    def set_access(self, doc_id: str, groups: Sequence[str], tags: Sequence[str]) -> None:
        with self._errors(f"update the groups of document {doc_id}"):
            self._client.set_payload(
                self._collection,
                payload={"groups": list(groups), "tags": list(tags)},
                points=models.Filter(must=[_match("doc_id", doc_id)]),
                wait=True,
            )

    def optimize(self) -> None:
        """Nothing to do: a server optimises by itself, local mode has no indexes."""

    def drop(self) -> None:
        with self._errors("delete the collection"):
            if self._client.collection_exists(self._collection):
                self._client.delete_collection(self._collection)

    # -- reads -------------------------------------------------------------------------
    def count(self, filter: SearchFilter | None = None) -> int:
        if filter is not None and filter.groups == ():
            return 0
        with self._errors("count chunks"):
            return self._client.count(
                self._collection, count_filter=_filter(filter), exact=True
            ).count

    def chunks(self, doc_id: str, groups: tuple[str, ...] | None = None) -> list[Chunk]:
        if groups == ():
            return []
        scope = _filter(SearchFilter(groups=groups, doc_ids=(doc_id,)))
        found: list[Chunk] = []
        offset: Any = None
        with self._errors(f"read the chunks of document {doc_id}"):
            while True:
                records, offset = self._client.scroll(
                    self._collection,
                    scroll_filter=scope,
                    limit=256,
                    offset=offset,
                    with_payload=True,
                    with_vectors=False,
                )
                found.extend(Chunk.from_payload(r.payload or {}) for r in records)
                if offset is None:
                    break
        return sorted(found, key=lambda c: c.chunk_index)

    def export(self, batch_size: int = 512) -> Iterator[list[EmbeddedChunk]]:
        offset: Any = None
        while True:
            with self._errors("read chunks"):
                records, offset = self._client.scroll(
                    self._collection,
                    limit=batch_size,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
            if records:
                yield [_embedded(r) for r in records]
            if offset is None:
                return

    def search(self, request: SearchRequest) -> list[Hit]:
        if request.filter.groups == ():
            return []
        query_filter = _filter(request.filter)
        sparse = (
            models.SparseVector(
                indices=list(request.sparse.indices), values=list(request.sparse.values)
            )
            if request.sparse is not None
            else None
        )
        dense = list(request.dense) if request.dense is not None else None
        kwargs: dict[str, Any]
        if request.mode == "dense":
            kwargs = {"query": _need(dense, "dense"), "using": DENSE}
        elif request.mode == "sparse":
            kwargs = {"query": _need(sparse, "sparse"), "using": SPARSE}
        else:
            depth = max(request.prefetch_limit, request.limit)
            kwargs = {
                "prefetch": [
                    models.Prefetch(
                        query=_need(dense, "dense"), using=DENSE, filter=query_filter, limit=depth
                    ),
                    models.Prefetch(
                        query=_need(sparse, "sparse"),
                        using=SPARSE,
                        filter=query_filter,
                        limit=depth,
                    ),
                ],
                "query": _fusion(request),
            }
        with self._errors("search"):
            response = self._client.query_points(
                self._collection,
                query_filter=query_filter,
                limit=request.limit,
                with_payload=True,
                with_vectors=[DENSE] if request.with_dense else False,
                **kwargs,
            )
        return [
            Hit(
                chunk=Chunk.from_payload(p.payload or {}),
                score=float(p.score),
                dense=_dense_of(p) if request.with_dense else None,
            )
            for p in response.points
        ]

    def neighbours(
        self, chunk: Chunk, chunk_indexes: Sequence[int], filter: SearchFilter
    ) -> list[Chunk]:
        if not chunk_indexes or filter.groups == ():
            return []
        base = _filter(filter)
        must: list[models.Condition] = [
            _match("doc_id", chunk.doc_id),
            _match("content_hash", chunk.content_hash),
            models.FieldCondition(
                key="chunk_index", match=models.MatchAny(any=list(chunk_indexes))
            ),
        ]
        if base is not None:
            must.append(base)
        with self._errors(f"read neighbouring chunks of document {chunk.doc_id}"):
            records, _ = self._client.scroll(
                self._collection,
                scroll_filter=models.Filter(must=must),
                limit=len(chunk_indexes),
                with_payload=True,
                with_vectors=False,
            )
        return sorted(
            (Chunk.from_payload(r.payload or {}) for r in records), key=lambda c: c.chunk_index
        )

    def info(self) -> StoreInfo:
        with self._errors("read the collection"):
            if not self._client.collection_exists(self._collection):
                return StoreInfo(self._engine, self._location, self._collection, 0, None, None)
            info = self._client.get_collection(self._collection)
            points = self._client.count(self._collection, exact=True).count
        metadata = info.config.metadata or {}
        dim = metadata.get("dense_dim")
        return StoreInfo(
            engine=self._engine,
            location=self._location,
            collection=self._collection,
            points=points,
            embedder=metadata.get("embedder"),
            dense_dim=int(dim) if dim is not None else None,
        )

    def close(self) -> None:
        self._client.close()

    # -- helpers -----------------------------------------------------------------------
    def _errors(self, action: str) -> TranslateErrors:
        return TranslateErrors(f"cannot {action} in {self._engine} at {self._location}", _ERRORS)


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _fusion(request: SearchRequest) -> models.Query:
    if request.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    return models.RrfQuery(rrf=models.Rrf(k=request.rrf_k, weights=list(request.weights)))


def _dense_of(point: models.ScoredPoint) -> tuple[float, ...] | None:
    vector = point.vector.get(DENSE) if isinstance(point.vector, dict) else None
    if not isinstance(vector, list):
        return None
    return tuple(float(x) for x in cast(list[float], vector))


def _embedded(record: models.Record) -> EmbeddedChunk:
    vector = record.vector if isinstance(record.vector, dict) else {}
    dense, sparse = vector.get(DENSE), vector.get(SPARSE)
    if not isinstance(dense, list) or not isinstance(sparse, models.SparseVector):
        raise StoreError(f"point {record.id} has no {DENSE} or {SPARSE} vector")
    return EmbeddedChunk(
        Chunk.from_payload(record.payload or {}),
        tuple(float(x) for x in cast(list[float], dense)),
        SparseVector(tuple(sparse.indices), tuple(sparse.values)),
    )


def _need(value: Any, kind: str) -> Any:
    if value is None:
        raise StoreError(f"a {kind} search needs a {kind} query vector")
    return value


def _filter(spec: SearchFilter | None) -> models.Filter | None:
    if spec is None:
        return None
    clauses = Clauses.of(spec)
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
        for key, values in clauses.any_of
    ]
    if clauses.modified is not None:
        gte, lte = clauses.modified
        must.append(models.FieldCondition(key="modified_at", range=models.Range(gte=gte, lte=lte)))
    return models.Filter(must=must) if must else None
