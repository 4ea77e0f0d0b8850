"""Search policy: validate, scope to the caller's groups, query the store, shape the hits.

The order of a search:

1. validate the query, mode and size; work out the access scope (the caller's
   groups, narrowed by the groups they ask for). The scope goes into the store
   query as a mandatory filter, so a chunk outside it is never scored, returned
   or counted;
2. embed the query (dense always: the relevance floor needs it; sparse unless
   ``dense`` mode) and run one store query (hybrid: two prefetches fused by DBSF
   or RRF inside Qdrant);
3. drop hits under the relevance floor (query-chunk cosine), rerank when a
   cross-encoder is configured, drop near-duplicates, keep ``top_k``;
4. attach neighbouring chunks when asked, read under the same filter.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from core.errors import InputError
from core.protocols import Embedder, Reranker, SparseEncoder, VectorStore
from core.settings import MAX_NEIGHBOURS, RetrievalSettings
from core.types import CollectionSpec, Hit, Principal, SearchFilter, SearchMode, SearchRequest
from retrieval.filters import access_scope, build_filter

logger = logging.getLogger(__name__)

MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
MAX_TOP_K = 1000
_DEDUPE_SPARE = 5  # extra candidates fetched so dropped duplicates can be replaced
_WORD = re.compile(r"\w+")


class Retriever:
    """Runs searches for callers. One instance serves many queries (models stay loaded)."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEncoder,
        settings: RetrievalSettings,
        *,
        reranker: Reranker | None = None,
        rerank_depth: int = 30,
        spec: CollectionSpec | None = None,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._sparse = sparse
        self._settings = settings
        self._reranker = reranker
        self._rerank_depth = rerank_depth
        self._spec = spec  # checked against the collection before the first search
        self._checked = spec is None

    def search(
        self,
        query: str,
        principal: Principal,
        *,
        top_k: int | None = None,
        mode: str | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        groups: Sequence[str] | None = None,
        neighbours: int | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Hit]:
        """The best ``top_k`` chunks for ``query`` that ``principal`` may read.

        ``groups`` narrows the search to some of the caller's groups (an admin may
        name any); ``filters`` takes the fields of :data:`retrieval.filters.FILTER_FIELDS`.
        ``timings``, when given, receives the seconds spent per stage (``embed``,
        ``search``, ``rerank``).
        """
        s = self._settings
        text = query.strip()
        if not text:
            raise InputError("the query is empty; type a question or some keywords")
        if len(text) > s.max_query_chars:
            raise InputError(
                f"the query is {len(text)} characters; shorten it to {s.max_query_chars} or fewer"
            )
        mode = mode or s.mode
        if mode not in MODES:
            raise InputError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        top_k = s.top_k if top_k is None else top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise InputError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}")
        expand = s.neighbours if neighbours is None else neighbours
        if not 0 <= expand <= MAX_NEIGHBOURS:
            raise InputError(f"neighbours must be between 0 and {MAX_NEIGHBOURS}, not {expand}")
        search_filter = build_filter(filters, access_scope(principal, groups))
        if not self._ready():
            return []

        started = time.perf_counter()
        dense = self._embedder.embed_query(text)
        sparse = self._sparse.encode_query(text) if mode != "dense" else None
        embedded = time.perf_counter()
        depth = top_k + _DEDUPE_SPARE
        if self._reranker is not None:
            depth = max(depth, self._rerank_depth)
        request = SearchRequest(
            mode=mode,
            limit=depth,
            filter=search_filter,
            dense=dense if mode != "sparse" else None,
            sparse=sparse,
            prefetch_limit=s.prefetch,
            fusion=s.fusion,
            rrf_k=s.rrf_k,
            weights=s.weights,
            with_dense=True,
        )
        hits = self._store.search(request)
        searched = time.perf_counter()
        hits = self._above_floor(hits, dense)
        if self._reranker is not None and hits:
            hits = self._reranker.rerank(text, hits)
        reranked = time.perf_counter()
        # equal scores (the same text in several documents) in a fixed order, not the
        # engine's storage order, so the kept duplicate does not depend on write history
        hits = sorted(hits, key=lambda h: (-h.score, h.chunk.source, h.chunk.chunk_index))
        hits = dedupe(hits, s.dedupe_threshold)[:top_k]
        if expand:
            hits = self._with_neighbours(hits, expand, search_filter)
        logger.info(
            "search mode=%s k=%d hits=%d embed=%.1fms store=%.1fms shape=%.1fms",
            mode,
            top_k,
            len(hits),
            (embedded - started) * 1000,
            (searched - embedded) * 1000,
            (time.perf_counter() - searched) * 1000,
        )
        if timings is not None:
            timings["embed"] = embedded - started
            timings["search"] = searched - embedded
            if self._reranker is not None:
                timings["rerank"] = reranked - searched
        return hits

    # -- steps ---------------------------------------------------------------------------
    def _ready(self) -> bool:
        """False while nothing is indexed; checks the collection's models once."""
        if self._checked:
            return True
        if self._store.info().points == 0:
            return False  # nothing ingested yet (checked again next time)
        assert self._spec is not None
        self._store.ensure_collection(self._spec)
        self._checked = True
        return True

    def _above_floor(self, hits: list[Hit], query: tuple[float, ...]) -> list[Hit]:
        vectors = [h.dense for h in hits]
        if not hits or any(v is None for v in vectors):
            return [replace(h, dense=None) for h in hits]
        relevance = np.asarray(vectors, dtype=np.float32) @ np.asarray(query, dtype=np.float32)
        floor = self._settings.relevance_floor
        return [
            replace(h, relevance=float(r), dense=None)
            for h, r in zip(hits, relevance.tolist(), strict=True)
            if r >= floor
        ]

    def _with_neighbours(
        self, hits: list[Hit], expand: int, search_filter: SearchFilter
    ) -> list[Hit]:
        returned = {h.chunk.id for h in hits}
        shaped = []
        for hit in hits:
            i = hit.chunk.chunk_index
            wanted = [j for j in range(i - expand, i + expand + 1) if j >= 0 and j != i]
            found = self._store.neighbours(hit.chunk, wanted, search_filter)
            shaped.append(replace(hit, neighbours=tuple(c for c in found if c.id not in returned)))
        return shaped


def dedupe(hits: Sequence[Hit], threshold: float) -> list[Hit]:
    """Drop hits whose word 5-grams overlap a better hit's by ``threshold`` (Jaccard) or more.

    An inverted index of the kept hits' 5-grams keeps this linear in the text size.
    """
    kept: list[Hit] = []
    sizes: list[int] = []
    index: dict[tuple[str, ...], list[int]] = {}
    for hit in hits:
        grams = _shingles(hit.chunk.text)
        shared: Counter[int] = Counter()
        for gram in grams:
            for k in index.get(gram, ()):
                shared[k] += 1
        if any(c / (len(grams) + sizes[k] - c) >= threshold for k, c in shared.items()):
            continue
        for gram in grams:
            index.setdefault(gram, []).append(len(kept))
        kept.append(hit)
        sizes.append(len(grams))
    return kept


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
