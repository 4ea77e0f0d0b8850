"""``create_app``: the API, assembled from its routers, with its dependencies passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from backends.container import Container, build_container
from core.settings import Settings
from serving.api.errors import install_error_handlers
from serving.api.metrics import Metrics
from serving.api.middleware import BodyLimit, RequestContext, body_limit
from serving.api.routes import (
    access,
    account,
    admin,
    ask,
    conversations,
    documents,
    health,
    jobs,
    openai,
    search,
    sources,
)
from serving.api.services import Services, build_services

ROUTERS = (
    health,
    account,
    ask,
    search,
    openai,
    conversations,
    sources,
    documents,
    jobs,
    access,
    admin,
)


def create_app(
    settings: Settings, container: Container | None = None, services: Services | None = None
) -> FastAPI:
    """The API. With ``services`` (``enclave serve`` builds them first, so start-up errors
    are one line), the app uses them; else it builds them on ``container`` (or on a
    container of its own, closed with the app)."""
    app_metrics = services.metrics if services else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = container is None and services is None
        c = (  # a store held by another process: 503 on store routes until it is free
            services.container
            if services
            else (container or build_container(settings, wait_for_store=True))
        )
        try:
            ready = (
                services
                if services
                else await run_in_threadpool(build_services, settings, c, app_metrics)
            )
        except BaseException:
            if own:
                c.close()
            raise
        app.state.services = ready
        try:
            yield
        finally:
            for generator in ready.answerer.router.generators():
                await generator.aclose()
            ready.close()
            if own:
                c.close()

    app = FastAPI(
        title="Enclave API",
        version="1",
        description="Grounded answers with citations from your organisation's documents.",
        lifespan=lifespan,
        docs_url=None,  # the Swagger/ReDoc pages load scripts from a CDN: no outbound calls
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit_for=body_limit(settings))
    app.add_middleware(RequestContext, metrics=app_metrics)  # outermost: ids on every reply
    for module in ROUTERS:
        app.include_router(module.router)
    return app
