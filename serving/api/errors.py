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

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
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


# -- what the OpenAPI schema says of errors -------------------------------------------
class ErrorDetail(BaseModel):
    type: str = Field(
        description="invalid_request, unauthorized, forbidden, not_found, conflict, "
        "too_large, rate_limited, llm_error, llm_unavailable, unavailable or internal_error."
    )
    message: str
    request_id: str = Field(description="Also the `X-Request-ID` response header.")


class ErrorBody(BaseModel):
    """The body of every error (``serving/web.py``)."""

    error: ErrorDetail


_ERRORS = {  # the error statuses routes document, all with an ErrorBody
    400: "A rule the schema cannot express: e.g. a question over the configured length, an "
    "unknown model or filter field, a path outside the ingest roots; or a body that is not "
    "UTF-8.",
    401: "No API key, or an invalid or revoked one.",
    403: "The endpoint needs an admin API key.",
    404: "No such resource that this key may read.",
    409: "The resource changed since it was recorded (a source file edited on the server "
    "after ingestion), or too many answers of this key are in progress.",
    413: "The request body is over the configured limit.",
    422: "The request does not match this schema.",
    429: "Too many requests for this API key.",
    502: "The LLM refused the request (llm_error).",
    503: "The LLM (llm_unavailable), or the store or database (unavailable), cannot be reached.",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, and for the 401, 429 and 503 that
    every route with a key may answer (the key is checked in the database)."""
    return {
        status: {
            "model": ErrorBody,
            "description": _ERRORS[status],
            **({"headers": _ERROR_HEADERS[status]} if status in _ERROR_HEADERS else {}),
        }
        for status in sorted({401, 429, 503, *statuses})
    }


def or_stream(description: str, events: list[str], named: bool) -> dict[int | str, Any]:
    """The 200 of an answer route: JSON, or with ``stream`` server-sent events (OpenAPI 3.1:
    the schema of one event) named ``events`` (every event ``named``, or only those)."""
    event = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": events},
            "data": {"type": "string"},
        },
        "required": ["event", "data"] if named else ["data"],
    }
    return {200: {"description": description, "content": {"text/event-stream": {"schema": event}}}}
