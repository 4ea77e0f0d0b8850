"""Usage and quality figures (admin)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from core.errors import InputError
from serving.api.deps import AdminDep, ServicesDep
from serving.api.errors import errors
from serving.api.usage import MAX_DAYS, usage_report, window_start
from serving.evaluation.records import latest_eval_record

router = APIRouter(tags=["admin"])


@router.get("/v1/usage", responses=errors(400, 403, 422))
def usage(
    services: ServicesDep,
    _key: AdminDep,
    days: Annotated[int, Query(description=f"Days to cover (1-{MAX_DAYS}).")] = 30,
) -> dict[str, Any]:
    """Usage from the audit log: questions per day, latency per stage, feedback, the most
    cited documents and the latest unanswered questions."""
    if not 1 <= days <= MAX_DAYS:
        raise InputError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    now = time.time()
    rows = services.db.audit_since(window_start(days, now))
    registry = services.container.registry

    def lookup(doc_id: str) -> tuple[str, str] | None:
        record = registry.get(doc_id)
        return None if record is None else (record.document.title, record.document.source)

    return usage_report(rows, days, now, lookup)


@router.get("/v1/quality", responses=errors(403))
def quality(services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
    """The latest evaluation records (``enclave eval retrieval`` / ``eval answers``), or
    null for a kind never run on this server's data dir."""
    data_dir = services.settings.data_dir
    return {
        "retrieval": latest_eval_record(data_dir, "retrieval"),
        "answers": latest_eval_record(data_dir, "answers"),
    }
