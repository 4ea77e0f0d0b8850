"""The query API (FastAPI): answers, search, an OpenAI-compatible endpoint, documents,
access rules, jobs, usage.

``create_app(settings, container)`` receives its dependencies; routes get them through
the ``Annotated`` aliases of ``deps.py``. Every route but ``/healthz`` and ``/readyz``
needs ``Authorization: Bearer <API key>``; the key's groups are the access scope of every
retrieval it makes, and its role (``admin``/``user``) decides the admin routes. Errors
leave as one JSON body (``errors.py``); a failure mid-stream is an SSE ``error`` event.

    app.py         create_app: routers, middleware, lifespan
    services.py    what routes use (answerer, app database, limits, jobs), built once
    deps.py        ServicesDep, KeyDep, AdminDep, PrincipalDep, RetrieverDep, AnswererDep
    schemas.py     request and response models (the OpenAPI schema)
    errors.py      error -> status, one error body, the errors routes document
    middleware.py  request ids, one log line per request, body limits
    limits.py      rate limit, failed sign-ins, answers in progress
    sse.py         server-sent events with keep-alive pings; the answer stream driver
    answering.py   what the answer routes share
    jobs.py        the API's ingestion jobs
    originals.py   uploads kept per upload, downloads of the ingested bytes
    routes/        one APIRouter per concern
"""

from serving.api.app import create_app

__all__ = ["create_app"]
