"""The routes' dependencies, as ``Annotated`` aliases: the services, the caller's key
(authenticated, rate-limited), an admin key, and the components a route uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backends.sql.app import ApiKey
from core.errors import EnclaveError
from core.types import Principal
from retrieval.search import Retriever
from serving.answers import Answerer
from serving.api.errors import ApiError
from serving.api.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

BEARER = HTTPBearer(auto_error=False, description="An API key (`enclave keys create`).")
"""Reads ``Authorization: Bearer <key>``, and documents it in the OpenAPI schema."""


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> ApiKey:
    token = credentials.credentials.strip() if credentials else ""
    client = _client(request)
    services.sign_ins.check(client)
    if not token:
        raise ApiError(
            401,
            "unauthorized",
            "missing API key: send `Authorization: Bearer <key>` (create one with "
            "`enclave keys create`)",
            {"WWW-Authenticate": "Bearer"},
        )
    key = services.db.authenticate(token)
    if key is None:
        services.sign_ins.failed(client)
        raise ApiError(
            401, "unauthorized", "invalid or revoked API key", {"WWW-Authenticate": "Bearer"}
        )
    services.limiter.check(key.id)
    return key


KeyDep = Annotated[ApiKey, Depends(authenticate)]


def require_admin(key: KeyDep) -> ApiKey:
    if key.role != "admin":
        raise ApiError(403, "forbidden", "this endpoint needs an admin API key")
    return key


AdminDep = Annotated[ApiKey, Depends(require_admin)]


def principal(key: KeyDep) -> Principal:
    return key.principal


PrincipalDep = Annotated[Principal, Depends(principal)]


def answerer(services: ServicesDep) -> Answerer:
    return services.answerer


AnswererDep = Annotated[Answerer, Depends(answerer)]


def retriever(services: ServicesDep) -> Retriever:
    return services.answerer.retriever


RetrieverDep = Annotated[Retriever, Depends(retriever)]


def admin_asks(request: Request, services: Services) -> bool:
    """Whether the request carries a valid admin key (for routes that need none)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    client = _client(request)
    try:
        services.sign_ins.check(client)
        key = services.db.authenticate(token.strip())
    except (EnclaveError, ApiError):
        return False
    if key is None:
        services.sign_ins.failed(client)
        return False
    return key.role == "admin"
