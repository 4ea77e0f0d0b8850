"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.errors import ConfigError, EnclaveError, LLMUnavailableError
from serving.api.deps import AdminDep, ServicesDep, admin_asks
from serving.api.errors import errors
from serving.api.schemas import Readiness

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: `checks` says why."}},
)
def readyz(request: Request, services: ServicesDep, response: Response) -> dict[str, Any]:
    """Readiness: the store and the default LLM are reachable. Why one is not (which may
    name internal addresses) is shown to an admin key only; others read `unavailable`."""
    checks: dict[str, str] = {}
    try:
        services.container.store.count()
        checks["store"] = "ok"
    except EnclaveError as exc:
        checks["store"] = str(exc)
    llm = services.answerer.router
    try:
        llm.get(llm.default).check()
        checks["llm"] = "ok"
    except (LLMUnavailableError, ConfigError) as exc:
        checks["llm"] = str(exc)
    ready = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ready else 503
    if not ready:
        for name, why in checks.items():
            if why != "ok":
                logger.warning("not ready: %s: %s", name, why)
        if not admin_asks(request, services):
            checks = {k: v if v == "ok" else "unavailable" for k, v in checks.items()}
    return {"status": "ready" if ready else "unavailable", "checks": checks}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors(403),
    },
)
def metrics(services: ServicesDep, _key: AdminDep) -> Response:
    """Prometheus metrics (admin key)."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
