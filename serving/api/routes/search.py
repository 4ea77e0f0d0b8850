"""Passages for a query, no LLM."""

from __future__ import annotations

import time

from fastapi import APIRouter

from backends.sql.app import AuditEntry
from core.logging import request_id_var
from serving.answers.views import HitOut
from serving.api.deps import KeyDep, RetrieverDep, ServicesDep
from serving.api.errors import errors
from serving.api.schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["answers"])


@router.post("/v1/search", responses=errors(400, 422))
def search(
    body: SearchRequest, services: ServicesDep, retriever: RetrieverDep, key: KeyDep
) -> SearchResponse:
    """The best passages for a query (no LLM), within the key's groups."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    hits = retriever.search(
        body.query,
        key.principal,
        top_k=body.top_k,
        mode=body.mode,
        filters=body.filters,
        timings=timings,
    )
    services.metrics.observe_stages(timings)
    services.db.record(
        AuditEntry(
            kind="search",
            key_id=key.id,
            question=body.query,
            chunk_ids=tuple(h.chunk.id for h in hits),
            model="",
            answer="",
            latency_ms=(time.perf_counter() - started) * 1000,
            request_id=request_id_var.get(),
        ),
        redact_pii=services.settings.api.redact_audit,
    )
    admin = key.principal.admin
    return SearchResponse(hits=[HitOut.from_domain(h, scores=admin) for h in hits])
