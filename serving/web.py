"""HTTP plumbing for the API: one error body, request ids, rate limits, metrics, SSE.

Every error leaves the API as ``{"error": {"type", "message", "request_id"}}`` with
the status code chosen here, in one place:

    InputError, DocumentError  400 invalid_request
    (no or wrong API key)      401 unauthorized
    AccessDeniedError          403 forbidden
    NotFoundError              404 not_found
    ConflictError              409 conflict
    (method not allowed)       405 method_not_allowed + Allow (every method of the path)
    (body over the limit)      413 too_large
    (request schema)           422 invalid_request
    (rate limit, failed sign-ins, answers in progress)
                               429 rate_limited   + Retry-After
    ModelError                 502 llm_error
    LLMUnavailableError        503 llm_unavailable
    StoreError, ConfigError    503 unavailable
    anything else              500 internal_error (logged with its traceback)
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.errors import (
    AccessDeniedError,
    ConfigError,
    ConflictError,
    DocumentError,
    EnclaveError,
    InputError,
    LLMUnavailableError,
    ModelError,
    NotFoundError,
    StoreError,
)
from core.logging import request_id_var

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


_STATUS: list[tuple[type[EnclaveError], int, str]] = [
    (InputError, 400, "invalid_request"),
    (DocumentError, 400, "invalid_request"),
    (AccessDeniedError, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (ModelError, 502, "llm_error"),
    (LLMUnavailableError, 503, "llm_unavailable"),
    (StoreError, 503, "unavailable"),
    (ConfigError, 503, "unavailable"),
]
_HTTP_TYPES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


class ApiError(Exception):
    """An error with its HTTP status, raised by the API layer itself (auth, limits)."""

    def __init__(
        self, status: int, type_: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers or {}


def classify(exc: BaseException) -> tuple[int, str, str]:
    """Status, type and message of an exception, as the API reports it."""
    if isinstance(exc, ApiError):
        return exc.status, exc.type, exc.message
    for kind, status, type_ in _STATUS:
        if isinstance(exc, kind):
            return status, type_, str(exc)
    return 500, "internal_error", "internal error; the server log has the details"


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "request_id": request_id_var.get()}}


def error_response(exc: BaseException) -> JSONResponse:
    status, type_, message = classify(exc)
    if status == 500:
        logger.error("internal error", exc_info=exc)
    headers = exc.headers if isinstance(exc, ApiError) else {}
    return JSONResponse(error_body(type_, message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_error(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        message = "invalid request: " + "; ".join(problems)
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        type_ = _HTTP_TYPES.get(exc.status_code, "invalid_request")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names one route's methods; a path may have more
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(
            error_body(type_, str(exc.detail)), status_code=exc.status_code, headers=headers
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(EnclaveError, on_error)
    app.add_exception_handler(ApiError, on_error)
    app.add_exception_handler(Exception, on_error)


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route at the request's path (a 405's ``Allow`` header)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


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


class Metrics:
    """The API's Prometheus metrics, on a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "enclave_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "enclave_request_seconds",
            "HTTP request latency by route (streams: until the last byte).",
            ["route"],
            registry=self.registry,
        )
        self.stages = Histogram(
            "enclave_stage_seconds",
            "Time per answer stage: embed, search, rerank, rewrite, first_token, generate.",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.tokens = Counter(
            "enclave_llm_tokens_total",
            "LLM tokens by model and kind (prompt, completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.ingest_files = Counter(
            "enclave_ingest_files_total",
            "Files handled by API ingestion jobs, by result.",
            ["result"],
            registry=self.registry,
        )
        self.ingest_chunks = Counter(
            "enclave_ingest_chunks_total",
            "Chunks written by API ingestion jobs.",
            registry=self.registry,
        )

    def observe_stages(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.stages.labels(stage).observe(seconds)


class RateLimiter:
    """A token bucket per API key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        """Take one token for ``key_id`` or raise a 429 ``ApiError`` with Retry-After."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self._rate)
                self._buckets[key_id] = (tokens, now)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests for this API key; retry in {wait} s",
                    {"Retry-After": str(wait)},
                )
            self._buckets[key_id] = (tokens - 1.0, now)


class FailureThrottle:
    """Failed sign-ins per client address: after ``per_minute`` failures, that address is
    refused (429) without its key being checked, until the bucket refills."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, last = self._buckets.get(client, (self._capacity, now))
        return min(self._capacity, tokens + (now - last) * self._rate)

    def check(self, client: str) -> None:
        """Refuse ``client`` while its failures are spent."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(client, now)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self._rate)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many failed sign-ins from this address; retry in {wait} s",
                    {"Retry-After": str(wait)},
                )

    def failed(self, client: str) -> None:
        """Count one failed sign-in of ``client``."""
        now = time.monotonic()
        with self._lock:
            self._buckets[client] = (self._tokens(client, now) - 1.0, now)
            if len(self._buckets) > 100_000:  # bounded memory under a spray of addresses
                self._buckets.clear()


class InFlight:
    """Answers in progress per API key, at most ``limit`` each (then 429)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> Callable[[], None]:
        """Count one answer of ``key_id``; the function that ends it (safe to call twice)."""
        with self._lock:
            if self._counts.get(key_id, 0) >= self._limit:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"this API key already has {self._limit} answers in progress; wait for one "
                    "to finish (ENCLAVE_API__MAX_ANSWERS_PER_KEY)",
                    {"Retry-After": "1"},
                )
            self._counts[key_id] = self._counts.get(key_id, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._counts.get(key_id, 1) - 1
                if left > 0:
                    self._counts[key_id] = left
                else:
                    self._counts.pop(key_id, None)

        return release

    def count(self, key_id: str) -> int:
        with self._lock:
            return self._counts.get(key_id, 0)


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


def sse(data: object, event: str | None = None) -> str:
    """One server-sent event (named, or a bare ``data:`` line as OpenAI streams use)."""
    named = f"event: {event}\n" if event else ""
    return f"{named}data: {json.dumps(data, ensure_ascii=False)}\n\n"
