"""Search: embed the query, run it in the store with the caller's access filter."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from backends.container import Container
from core.errors import InputError
from core.types import Hit, SearchFilter, SearchMode, SearchRequest

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 4000
MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")


class Retriever:
    """Runs queries for a caller: ``groups=None`` is admin scope, otherwise a mandatory filter."""

    def __init__(self, container: Container) -> None:
        self._c = container
        self._checked = False  # collection matches the embedder (checked on first search)

    def search(
        self,
        query: str,
        *,
        groups: Sequence[str] | None,
        top_k: int = 5,
        mode: str = "hybrid",
    ) -> list[Hit]:
        text = query.strip()
        if not text:
            raise InputError("the query is empty; type a question or some keywords")
        if len(text) > MAX_QUERY_CHARS:
            raise InputError(
                f"the query is {len(text)} characters; shorten it to {MAX_QUERY_CHARS} or fewer"
            )
        if mode not in MODES:
            raise InputError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not 1 <= top_k <= 1000:
            raise InputError(f"top_k must be between 1 and 1000, not {top_k}")
        if not self._checked:
            if self._c.store.info().points == 0:
                return []  # nothing ingested yet (checked again next time)
            self._c.store.ensure_collection(self._c.collection_spec())
            self._checked = True
        started = time.perf_counter()
        dense = self._c.embedder.embed_query(text) if mode != "sparse" else None
        sparse = self._c.sparse.encode_query(text) if mode != "dense" else None
        embedded = time.perf_counter()
        request = SearchRequest(
            mode=mode,
            limit=top_k,
            filter=SearchFilter(groups=tuple(groups) if groups is not None else None),
            dense=dense,
            sparse=sparse,
            prefetch_limit=max(50, top_k * 4),
        )
        hits = self._c.store.search(request)
        logger.info(
            "search mode=%s k=%d embed=%.1fms search=%.1fms hits=%d",
            mode,
            top_k,
            (embedded - started) * 1000,
            (time.perf_counter() - embedded) * 1000,
            len(hits),
        )
        return hits
