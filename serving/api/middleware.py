"""ASGI middleware: a request id, a log line and metrics per request; body size limits."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from core.logging import request_id_var
from core.settings import Settings
from serving.api.errors import ApiError, error_body
from serving.api.metrics import Metrics

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestContext:
    """ASGI middleware: a request id (the caller's ``X-Request-ID`` if sane, else new) in
    every response header, error body and log line; request counts and latency."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if given.isascii() and 0 < len(given) <= 64 and given.isprintable() else ""
        rid = rid or uuid.uuid4().hex
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            elapsed = time.perf_counter() - started
            self.metrics.latency.labels(path).observe(elapsed)
            logger.info(
                "%s %s %s %.0f ms",
                scope.get("method", ""),
                scope.get("path", ""),
                status,
                elapsed * 1000,
            )
            request_id_var.reset(token)


class BodyLimit:
    """ASGI middleware: request bodies over a limit are refused with 413 (by their
    ``Content-Length`` at once, or when the bytes read pass it). ``limit_for(path,
    method)`` gives the limit in bytes."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        limit_for: Callable[[str, str], int],
    ) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""), scope.get("method", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse(error_body("too_large", _too_large(limit)), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, "too_large", _too_large(limit))
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> str:
    size = f"{limit / 1048576:g} MB" if limit >= 1048576 else f"{limit // 1024} KB"
    return (
        f"the request body is over {size}; send less (ENCLAVE_API__MAX_BODY_KB, "
        "ENCLAVE_API__MAX_UPLOAD_MB for uploads)"
    )


def body_limit(settings: Settings) -> Callable[[str, str], int]:
    """The body limit of a request by path and method: uploads have their own."""
    uploads = int(settings.api.max_upload_mb * 1024 * 1024)
    others = settings.api.max_body_kb * 1024

    def limit_for(path: str, method: str) -> int:
        return uploads if (path, method) == ("/v1/documents", "POST") else others

    return limit_for
