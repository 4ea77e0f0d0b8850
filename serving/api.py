"""The query API (FastAPI): answers, search, an OpenAI-compatible endpoint, documents.

``create_app(settings, container)`` receives its dependencies; routes get them
through the ``Annotated`` aliases below. Every route but ``/healthz`` and
``/readyz`` needs ``Authorization: Bearer <API key>``; the key's groups are the
access scope of every retrieval it makes, and its role (``admin``/``user``)
decides the document, ingestion, usage, quality and metrics endpoints. Conversations
belong to the key that started them. Errors leave as one JSON body
(``serving/web.py``); a failure mid-stream is an SSE ``error`` event. The OpenAPI schema
says all of it: the bearer key, every status a route answers (``errors``), the SSE events;
request bodies are validated strictly against it (``tests/reliability`` fuzzes the API
from it).
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from backends.container import Container, build_container
from backends.registry import RegisteredDocument, iso_time
from core.errors import ConfigError, EnclaveError, InputError, LLMUnavailableError, NotFoundError
from core.logging import request_id_var
from core.runtime import private_dir
from core.settings import Settings
from core.types import Citation, Hit, Principal
from ingest.access import Change
from ingest.pipeline import Ingestor, source_of, walk_files
from serving.answering import Answerer, Completed, Retrieved, Router, Token
from serving.db import ApiKey, AppDatabase, AuditEntry
from serving.evaluation import latest_eval_record
from serving.originals import (
    chunks_of,
    open_original,
    safe_name,
    save_upload,
    unique_in,
)
from serving.retriever import build_retriever, hit_json
from serving.usage import MAX_DAYS, usage_report, window_start
from serving.web import (
    ApiError,
    BodyLimit,
    FailureThrottle,
    InFlight,
    Metrics,
    RateLimiter,
    RequestContext,
    classify,
    error_body,
    install_error_handlers,
    sse,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
AUTO_MODEL = "enclave"
"""The model name that lets Enclave's router choose (``/v1/chat/completions``)."""
MAX_QUESTION_SCHEMA = 100_000  # hard schema cap; the configured limit is checked with a clear 400
MAX_MESSAGES = 200  # chat history a request may carry


# -- schemas -------------------------------------------------------------------------------
# Request bodies are strict: a value the schema does not allow (`"stream": 0`, `"top_k": "5"`)
# is a 422, not coerced. JSON Schema's integer includes 5.0, so that one is taken as 5.
Filters = dict[str, str | list[str]]
WHOLE = BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: str = Field(min_length=1, max_length=MAX_QUESTION_SCHEMA)
    conversation_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    model: str | None = Field(None, description="A model from GET /v1/models (default: routed).")
    filters: Filters | None = Field(
        None, description="source, tag, mime_type, doc_id, modified_after, modified_before."
    )
    top_k: Annotated[int, Field(ge=1, le=50), WHOLE] | None = None
    stream: bool = Field(False, description="Server-sent events instead of one JSON body.")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AskResponse(BaseModel):
    answer: str
    answer_id: str
    citations: list[Citation]
    passages: list[dict[str, Any]]
    model: str
    conversation_id: str
    abstained: bool
    usage: UsageOut


class SearchRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    query: str = Field(min_length=1, max_length=MAX_QUESTION_SCHEMA)
    top_k: Annotated[int, Field(ge=1, le=100), WHOLE] | None = None
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    filters: Filters | None = None


class SearchResponse(BaseModel):
    hits: list[dict[str, Any]]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # OpenAI clients send many fields
    model: str = Field(AUTO_MODEL, description=f"A model from /v1/models; `{AUTO_MODEL}` routes.")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description=f"At most {MAX_MESSAGES}; the last user message is the question and only "
        "the latest turns before it (ENCLAVE_LLM__HISTORY_TURNS) are used.",
    )
    stream: bool = False


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    answer_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=4000)


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="A file or folder on the server, inside ENCLAVE_API__INGEST_ROOTS.",
    )
    groups: list[str] | None = Field(
        None, description="Groups of the documents (default: folder groups, default groups)."
    )
    tags: list[str] | None = None


class AccessRuleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(
        min_length=1,
        max_length=2048,
        description="A folder or file on the server (resolved), or a source id such as a URL.",
    )
    groups: list[str] = Field(
        min_length=1, max_length=100, description="The groups that may read what lies under it."
    )


class AccessRuleOut(BaseModel):
    prefix: str
    groups: list[str]
    origin: str = Field(description="`admin`, `upload`, or `upgrade` (kept from before rules).")
    updated_at: str
    updated_by: str
    documents: int = Field(description="Registered documents this rule decides now.")


class AccessRulesOut(BaseModel):
    rules: list[AccessRuleOut]
    pending: int = Field(
        description="Documents whose groups still differ from their rule (an interrupted "
        "change); the next change or `enclave access apply` fixes them."
    )


class AccessChangeOut(BaseModel):
    prefix: str
    before: list[str] | None = Field(description="The groups before; null: there was no rule.")
    after: list[str] | None = Field(description="The groups now; null: the rule was removed.")
    documents: int = Field(description="Documents whose groups changed.")


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="`ok`, or why the store / the LLM is not ready.")


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


def _or_stream(description: str, events: list[str], named: bool) -> dict[int | str, Any]:
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


# -- services ------------------------------------------------------------------------------
@dataclass
class Services:
    """What the routes use; built once per app."""

    settings: Settings
    container: Container
    db: AppDatabase
    metrics: Metrics
    limiter: RateLimiter
    answerer: Answerer
    ingestor: Ingestor
    sign_ins: FailureThrottle
    answering: InFlight
    jobs: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="ingest-job")
    )

    def close(self) -> None:
        self.jobs.shutdown(wait=True, cancel_futures=True)
        self.db.close()


def build_services(
    settings: Settings, container: Container, metrics: Metrics | None = None
) -> Services:
    """Load the models, start or check the LLMs, open the app database."""
    retriever = build_retriever(container)
    generators = container.generators()
    for generator in generators.values():
        try:
            generator.check()
        except LLMUnavailableError as exc:  # may come up later: /readyz reports it
            logger.warning("%s", exc)
    router = Router(generators, settings.llm)
    return Services(
        settings=settings,
        container=container,
        db=AppDatabase(settings.database_url),
        metrics=metrics or Metrics(),
        limiter=RateLimiter(settings.api.rate_limit_per_minute),
        answerer=Answerer(retriever, router, settings.llm),
        ingestor=Ingestor(container),
        sign_ins=FailureThrottle(settings.api.auth_failures_per_minute),
        answering=InFlight(settings.api.max_answers_per_key),
    )


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


BEARER = HTTPBearer(auto_error=False, description="An API key (`enclave keys create`).")
"""Reads ``Authorization: Bearer <key>``, and documents it in the OpenAPI schema."""


def authenticate(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> ApiKey:
    token = credentials.credentials.strip() if credentials else ""
    client = request.client.host if request.client else "unknown"
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
            401,
            "unauthorized",
            "invalid or revoked API key",
            {"WWW-Authenticate": "Bearer"},
        )
    services.limiter.check(key.id)
    return key


KeyDep = Annotated[ApiKey, Depends(authenticate)]


def require_admin(key: KeyDep) -> ApiKey:
    if key.role != "admin":
        raise ApiError(403, "forbidden", "this endpoint needs an admin API key")
    return key


AdminDep = Annotated[ApiKey, Depends(require_admin)]


# -- presenting ----------------------------------------------------------------------------
def passages_json(hits: tuple[Hit, ...], principal: Principal) -> list[dict[str, Any]]:
    return [{"n": n, **hit_json(h, scores=principal.admin)} for n, h in enumerate(hits, 1)]


def usage_json(done: Completed) -> dict[str, int]:
    u = done.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


# -- the answer flow, shared by /v1/ask and /v1/chat/completions ----------------------------
class AnswerSession:
    """One question's answer: runs the Answerer, audits it, keeps the conversation."""

    def __init__(
        self,
        services: Services,
        key: ApiKey,
        kind: str,
        question: str,
        *,
        history: list[tuple[str, str]],
        conversation_id: str | None,
        model: str | None,
        filters: Filters | None = None,
        top_k: int | None = None,
    ) -> None:
        limit = services.settings.retrieval.max_query_chars
        if len(question) > limit:
            raise InputError(
                f"the question is {len(question)} characters; shorten it to {limit} or fewer"
            )
        self.services = services
        self.key = key
        self.kind = kind
        self.question = question
        self.conversation_id = conversation_id
        self.started = time.perf_counter()
        self.release = services.answering.acquire(key.id)  # ended by finish or fail
        weakref.finalize(self, self.release)  # or when a stream never started is dropped
        self.events = services.answerer.run(
            question,
            key.principal,
            history=history,
            model=model,
            filters=filters,
            top_k=top_k,
        )
        self.pieces: list[str] = []
        self.retrieved: Retrieved | None = None
        self.answer_id = ""

    def next_event(self) -> Retrieved | Token | Completed | None:
        event = next(self.events, None)
        if isinstance(event, Retrieved):
            self.retrieved = event
        elif isinstance(event, Token):
            self.pieces.append(event.text)
        elif isinstance(event, Completed):
            self.finish(event)
        return event

    def run_to_end(self) -> Completed:
        while True:
            event = self.next_event()
            if isinstance(event, Completed):
                return event
            if event is None:  # pragma: no cover - the answerer always completes
                raise AssertionError("answer ended without completing")

    def finish(self, done: Completed) -> None:
        self.release()
        s = self.services
        s.metrics.observe_stages(done.timings)
        s.metrics.tokens.labels(done.answer.model, "prompt").inc(done.usage.prompt_tokens)
        s.metrics.tokens.labels(done.answer.model, "completion").inc(done.usage.completion_tokens)
        self.answer_id = self.audit("ok", done.answer.text, done)
        if self.conversation_id:
            s.db.append_turn(
                self.conversation_id,
                self.key.id,
                self.question,
                done.answer.text,
                answer_id=self.answer_id,
                citations=[asdict(c) for c in done.answer.citations],
            )

    def fail(self, status: str) -> None:
        """Audit an answer that failed or was cancelled, with what was written so far."""
        self.release()
        self.events.close()
        self.audit(status, "".join(self.pieces), None)

    def audit(self, status: str, answer: str, done: Completed | None) -> str:
        passages = (
            done.answer.passages if done else (self.retrieved.passages if self.retrieved else ())
        )
        model = done.answer.model if done else (self.retrieved.model if self.retrieved else "")
        timings = done.timings if done else (self.retrieved.timings if self.retrieved else {})
        cited = dict.fromkeys(c.doc_id for c in done.answer.citations) if done else {}
        entry = AuditEntry(
            kind=self.kind,
            key_id=self.key.id,
            question=self.question,
            chunk_ids=tuple(h.chunk.id for h in passages),
            model=model,
            answer=answer,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            prompt_tokens=done.usage.prompt_tokens if done else 0,
            completion_tokens=done.usage.completion_tokens if done else len(self.pieces),
            status=status,
            request_id=request_id_var.get(),
            conversation_id=self.conversation_id,
            timings_ms={stage: seconds * 1000 for stage, seconds in timings.items()},
            cited_doc_ids=tuple(cited),
            abstained=done.abstained if done else False,
        )
        return self.services.db.record(entry, redact_pii=self.services.settings.api.redact_audit)


async def stream_events(
    session: AnswerSession, first: Retrieved | Token | Completed | None, render: Any
) -> AsyncIterator[str]:
    """Drive a session in worker threads, rendering each event; audit cancellations and
    failures. A client that disconnects cancels this generator, which closes the LLM stream."""
    event = first
    finished = False
    try:
        while event is not None:
            for chunk in render(event):
                yield chunk
            if isinstance(event, Completed):
                finished = True
                return
            event = await run_in_threadpool(session.next_event)
    except Exception as exc:
        finished = True
        status, type_, message = classify(exc)
        if status == 500:
            logger.error("internal error mid-stream", exc_info=exc)
        await run_in_threadpool(session.fail, f"error: {type_}")
        yield sse(error_body(type_, message), "error")
    finally:
        if not finished:  # the client went away: stop generating, keep the partial answer
            session.fail("cancelled")


# -- the app -------------------------------------------------------------------------------
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
    app.add_middleware(BodyLimit, limit_for=_body_limit(settings))
    app.add_middleware(RequestContext, metrics=app_metrics)  # outermost: ids on every reply

    # -- health ------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
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
        router = services.answerer.router
        try:
            router.get(router.default).check()
            checks["llm"] = "ok"
        except (LLMUnavailableError, ConfigError) as exc:
            checks["llm"] = str(exc)
        ready = all(v == "ok" for v in checks.values())
        response.status_code = 200 if ready else 503
        if not ready:
            for name, why in checks.items():
                if why != "ok":
                    logger.warning("not ready: %s: %s", name, why)
            if not _admin_asks(request, services):
                checks = {k: v if v == "ok" else "unavailable" for k, v in checks.items()}
        return {"status": "ready" if ready else "unavailable", "checks": checks}

    @app.get(
        "/metrics",
        tags=["health"],
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

    @app.get("/v1/me", tags=["account"], responses=errors())
    def me(key: KeyDep) -> dict[str, Any]:
        """The calling key: id, name, role and groups."""
        return {"key_id": key.id, "name": key.name, "role": key.role, "groups": list(key.groups)}

    # -- answers -------------------------------------------------------------------------------
    @app.post(
        "/v1/ask",
        tags=["answers"],
        response_model=AskResponse,
        responses={
            **_or_stream(
                "The answer; with `stream`, server-sent events (each `data` is JSON).",
                ["retrieval", "token", "citations", "done", "error"],
                named=True,
            ),
            **errors(400, 404, 422, 502),
        },
    )
    async def ask(body: AskRequest, services: ServicesDep, key: KeyDep) -> Any:
        """A grounded answer with citations; with ``stream``, server-sent events
        ``retrieval``, ``token``..., ``citations``, ``done`` (or ``error``)."""
        conversation_id = body.conversation_id or uuid.uuid4().hex
        history = await run_in_threadpool(
            services.db.conversation,
            conversation_id,
            key.id,
            services.settings.llm.history_turns,
        )
        session = AnswerSession(
            services,
            key,
            "ask",
            body.question,
            history=history,
            conversation_id=conversation_id,
            model=body.model,
            filters=body.filters,
            top_k=body.top_k,
        )
        if not body.stream:
            done = await _guarded(session, session.run_to_end)
            return _ask_json(session, done, conversation_id)
        first = await _guarded(session, session.next_event)

        def render(event: Retrieved | Token | Completed) -> list[str]:
            if isinstance(event, Retrieved):
                return [
                    sse(
                        {
                            "passages": passages_json(event.passages, key.principal),
                            "model": event.model,
                            "query": event.query,
                            "conversation_id": conversation_id,
                        },
                        "retrieval",
                    )
                ]
            if isinstance(event, Token):
                return [sse({"text": event.text}, "token")]
            body = _ask_json(session, event, conversation_id)
            return [sse({"citations": body["citations"]}, "citations"), sse(body, "done")]

        return StreamingResponse(
            stream_events(session, first, render),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/v1/search", tags=["answers"], response_model=SearchResponse, responses=errors(400, 422)
    )
    def search(body: SearchRequestBody, services: ServicesDep, key: KeyDep) -> Any:
        """The best passages for a query (no LLM), within the key's groups."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        retriever = services.answerer.retriever
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
        return {"hits": [hit_json(h, scores=key.principal.admin) for h in hits]}

    # -- OpenAI-compatible ------------------------------------------------------------------------
    @app.get("/v1/models", tags=["openai"], responses=errors())
    def models(services: ServicesDep, _key: KeyDep) -> dict[str, Any]:
        """The models a request may name (OpenAI format); `enclave` lets the router choose."""
        names = [AUTO_MODEL, *services.answerer.router.names]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "enclave"} for n in names
            ],
        }

    @app.post(
        "/v1/chat/completions",
        tags=["openai"],
        responses={
            **_or_stream(
                "A chat completion; with `stream`, `chat.completion.chunk` events, then "
                "`[DONE]` (a failure: an `error` event).",
                ["error"],
                named=False,
            ),
            **errors(400, 422, 502),
        },
    )
    async def chat_completions(body: ChatRequest, services: ServicesDep, key: KeyDep) -> Any:
        """OpenAI-compatible chat: the last user message is the question, earlier turns the
        conversation. Answers are grounded in the key's documents; citations and passages
        come in extra fields (``citations`` on the response / the last stream chunk)."""
        turns = [m for m in body.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise InputError("the last message must be the user's question (role `user`)")
        history: list[tuple[str, str]] = []
        pending: str | None = None
        for m in turns[:-1]:
            if m.role == "user":
                pending = m.text()
            elif pending is not None:
                history.append((pending, m.text()))
                pending = None
        model = None if body.model == AUTO_MODEL else body.model
        session = AnswerSession(
            services,
            key,
            "chat",
            turns[-1].text(),
            history=history,
            conversation_id=None,
            model=model,
        )
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not body.stream:
            done = await _guarded(session, session.run_to_end)
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": done.answer.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": done.answer.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage_json(done),
                "citations": [asdict(c) for c in done.answer.citations],
                "passages": passages_json(done.answer.passages, key.principal),
                "answer_id": session.answer_id,
            }
        first = await _guarded(session, session.next_event)

        def chunk(model_name: str, delta: dict[str, str], finish: str | None, **extra: Any) -> str:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return sse(data)

        def render(event: Retrieved | Token | Completed) -> list[str]:
            if isinstance(event, Retrieved):
                return [chunk(event.model, {"role": "assistant", "content": ""}, None)]
            if isinstance(event, Token):
                model_name = session.retrieved.model if session.retrieved else ""
                return [chunk(model_name, {"content": event.text}, None)]
            text = (
                []
                if session.pieces
                else [chunk(event.answer.model, {"content": event.answer.text}, None)]
            )
            return [
                *text,
                chunk(
                    event.answer.model,
                    {},
                    "stop",
                    usage=usage_json(event),
                    citations=[asdict(c) for c in event.answer.citations],
                    answer_id=session.answer_id,
                ),
                "data: [DONE]\n\n",
            ]

        return StreamingResponse(
            stream_events(session, first, render),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/feedback", tags=["answers"], responses=errors(400, 404, 422))
    def feedback(body: FeedbackRequest, services: ServicesDep, key: KeyDep) -> dict[str, str]:
        """Thumbs up/down (and a comment) on an answer this key received."""
        services.db.add_feedback(
            body.answer_id,
            key.id,
            body.rating,
            body.comment,
            redact_pii=services.settings.api.redact_audit,
        )
        return {"status": "recorded"}

    # -- conversations (the key's own) ------------------------------------------------------------
    @app.get("/v1/conversations", tags=["conversations"], responses=errors())
    def list_conversations(services: ServicesDep, key: KeyDep) -> dict[str, Any]:
        """The key's conversations (latest 100), most recently updated first."""
        return {"conversations": services.db.list_conversations(key.id)}

    @app.get(
        "/v1/conversations/{conversation_id}",
        tags=["conversations"],
        responses=errors(400, 404, 422),
    )
    def get_conversation(
        conversation_id: str, services: ServicesDep, key: KeyDep
    ) -> dict[str, Any]:
        """Every turn of one of the key's conversations, oldest first."""
        turns = services.db.conversation_turns(conversation_id, key.id)
        return {"conversation_id": conversation_id, "turns": turns}

    @app.delete(
        "/v1/conversations/{conversation_id}",
        tags=["conversations"],
        responses=errors(400, 404, 422),
    )
    def delete_conversation(
        conversation_id: str, services: ServicesDep, key: KeyDep
    ) -> dict[str, str]:
        """Delete one of the key's conversations (the audit log keeps its answers)."""
        services.db.delete_conversation(conversation_id, key.id)
        return {"status": "deleted", "conversation_id": conversation_id}

    # -- sources (any key, within its groups) -------------------------------------------------------
    @app.get("/v1/sources/{doc_id}", tags=["documents"], responses=errors(404, 422))
    def source(doc_id: str, services: ServicesDep, key: KeyDep) -> dict[str, Any]:
        """A document the key may read: metadata and its chunks (to show a cited passage).
        Only chunks inside the key's groups are returned, even while a job rewrites them."""
        principal = key.principal
        record = _readable(services, principal, doc_id)
        scope = None if principal.admin else principal.groups
        chunks = services.container.store.chunks(doc_id, groups=scope)
        return {
            **record.as_dict(),
            "chunks": [
                {"chunk_id": c.id, "chunk_index": c.chunk_index, "page": c.page, "text": c.text}
                for c in chunks
            ],
        }

    @app.get(
        "/v1/sources/{doc_id}/file",
        tags=["documents"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The original file, exactly as it was ingested.",
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            },
            **errors(404, 409, 422),
        },
    )
    def source_file(doc_id: str, services: ServicesDep, key: KeyDep) -> StreamingResponse:
        """Download the original file of a document the key may read: the bytes that were
        ingested (checked against their recorded SHA-256; a file changed since is a 409)."""
        record = _readable(services, key.principal, doc_id)
        max_bytes = int(services.settings.ingest.max_file_mb * 1024 * 1024)
        spool = open_original(record, max_bytes)
        name = Path(record.document.source).name
        return StreamingResponse(
            chunks_of(spool),
            media_type=record.document.mime_type or "application/octet-stream",
            headers={
                "Content-Disposition": _attachment(name),
                "X-Content-Type-Options": "nosniff",
            },
        )

    # -- documents and jobs (admin) -----------------------------------------------------------------
    @app.get("/v1/documents", tags=["documents"], responses=errors(403))
    def list_documents(services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
        """Every ingested document."""
        return {"documents": [r.as_dict() for r in services.container.registry.all()]}

    @app.get("/v1/documents/{doc_id}", tags=["documents"], responses=errors(403, 404, 422))
    def get_document(doc_id: str, services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
        """One ingested document."""
        return _registered(services, doc_id).as_dict()

    @app.delete("/v1/documents/{doc_id}", tags=["documents"], responses=errors(403, 404, 422))
    def delete_document(doc_id: str, services: ServicesDep, _key: AdminDep) -> dict[str, str]:
        """Remove a document and its chunks."""
        _registered(services, doc_id)
        services.ingestor.delete(doc_id)
        return {"status": "deleted", "doc_id": doc_id}

    @app.post("/v1/documents", tags=["documents"], status_code=202, responses=errors(400, 403, 422))
    def upload_documents(
        services: ServicesDep,
        key: AdminDep,
        files: Annotated[list[UploadFile], File(description="The files to ingest.", min_length=1)],
        groups: Annotated[
            str | None,
            Form(
                description="Comma-separated groups that may read the files (recorded as the "
                "upload's access rule). Without: admins only."
            ),
        ] = None,
        tags: Annotated[str | None, Form(description="Comma-separated tags.")] = None,
    ) -> dict[str, Any]:
        """Upload files and start an ingestion job; poll ``GET /v1/jobs/{id}``. Each upload
        is kept in a folder of its own (never sharing a path with another upload, whatever
        the names) and removed with its documents."""
        limit = services.settings.api.max_upload_files
        if len(files) > limit:
            raise InputError(f"{len(files)} files in one upload; send at most {limit} per request")
        group_list = _split(groups, "groups")
        tag_list = _split(tags, "tags")
        names = [safe_name(upload.filename or "") for upload in files]
        job_id = services.db.create_job(key.id, len(files))
        folder = private_dir(services.settings.uploads_dir) / job_id
        folder.mkdir(mode=0o700)
        max_bytes = int(services.settings.ingest.max_file_mb * 1024 * 1024)
        saved: list[Path] = []
        rejected: list[dict[str, str]] = []
        for upload, name in zip(files, names, strict=True):
            target = unique_in(folder, name)
            if not save_upload(upload.file, target, max_bytes):
                rejected.append(
                    {
                        "source": name,
                        "status": "failed",
                        "reason": f"file is over the {services.settings.ingest.max_file_mb:g} "
                        "MB limit (ENCLAVE_INGEST__MAX_FILE_MB)",
                    }
                )
                continue
            saved.append(target)
        if group_list is not None and saved:
            services.ingestor.access.set_rule(
                folder, group_list, key.principal.name, origin="upload"
            )
        services.db.update_job(job_id, results=rejected, done_files=len(rejected))
        services.jobs.submit(
            _run_job, services, job_id, saved, None, tag_list, rejected, key.principal.name
        )
        return {"job_id": job_id, "status": "queued", "files": len(files)}

    @app.post("/v1/ingest", tags=["documents"], status_code=202, responses=errors(400, 403, 422))
    def ingest_path(body: IngestRequest, services: ServicesDep, key: AdminDep) -> dict[str, Any]:
        """Ingest a file or folder on the server (inside ENCLAVE_API__INGEST_ROOTS) as a job;
        poll ``GET /v1/jobs/{id}``. Like ``enclave ingest``: unchanged files are skipped,
        and documents whose files left the folder are deleted."""
        target = ingest_target(services.settings.api.ingest_roots, body.path)
        groups = _names(body.groups, "groups")
        tags = _names(body.tags, "tags")
        job_id = services.db.create_job(key.id, 1 if target.is_file() else 0)
        services.jobs.submit(
            _run_job, services, job_id, [target], groups, tags, [], key.principal.name, folder=True
        )
        return {"job_id": job_id, "status": "queued"}

    @app.get("/v1/jobs/{job_id}", tags=["documents"], responses=errors(403, 404, 422))
    def get_job(job_id: str, services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
        """An ingestion job: status, progress and per-file results."""
        return _job_json(services.db.get_job(job_id))

    @app.get("/v1/jobs", tags=["documents"], responses=errors(403))
    def list_jobs(services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
        """Recent ingestion jobs, newest first."""
        return {"jobs": [_job_json(j) for j in services.db.list_jobs()]}

    # -- access rules (admin) -----------------------------------------------------------------
    @app.get(
        "/v1/access/rules",
        tags=["access"],
        response_model=AccessRulesOut,
        responses=errors(403),
    )
    def list_access_rules(services: ServicesDep, _key: AdminDep) -> AccessRulesOut:
        """Every access rule (prefix -> groups), with the documents each decides."""
        access = services.ingestor.access
        return AccessRulesOut(
            rules=_rules_out(services),
            pending=len(access.pending()),
        )

    @app.put(
        "/v1/access/rules",
        tags=["access"],
        response_model=AccessChangeOut,
        responses=errors(400, 403, 422),
    )
    def set_access_rule(
        body: AccessRuleRequest, services: ServicesDep, key: AdminDep
    ) -> AccessChangeOut:
        """Let ``groups`` read everything under ``path``: recorded (with who changed it) and
        applied to the registered documents at once, without re-embedding."""
        groups = _names(body.groups, "groups") or []
        change = services.ingestor.access.set_rule(body.path, groups, key.principal.name)
        return AccessChangeOut(**_change(change))

    @app.delete(
        "/v1/access/rules",
        tags=["access"],
        response_model=AccessChangeOut,
        responses=errors(400, 403, 404, 422),
    )
    def remove_access_rule(
        services: ServicesDep,
        key: AdminDep,
        path: Annotated[str, Query(min_length=1, max_length=2048, description="The rule's path.")],
    ) -> AccessChangeOut:
        """Remove the rule at ``path``: its documents fall back to the next rule up, or to
        admins only."""
        change = services.ingestor.access.remove_rule(path, key.principal.name)
        return AccessChangeOut(**_change(change))

    @app.get("/v1/access/history", tags=["access"], responses=errors(403))
    def access_history(services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
        """The latest 100 rule changes, newest first: who, when, before and after."""
        return {"changes": services.container.registry.access_history()}

    # -- usage and quality (admin) --------------------------------------------------------------------
    @app.get("/v1/usage", tags=["admin"], responses=errors(400, 403, 422))
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

    @app.get("/v1/quality", tags=["admin"], responses=errors(403))
    def quality(services: ServicesDep, _key: AdminDep) -> dict[str, Any]:
        """The latest evaluation records (``enclave eval retrieval`` / ``eval answers``), or
        null for a kind never run on this server's data dir."""
        data_dir = services.settings.data_dir
        return {
            "retrieval": latest_eval_record(data_dir, "retrieval"),
            "answers": latest_eval_record(data_dir, "answers"),
        }

    return app


# -- helpers -----------------------------------------------------------------------------------
async def _guarded(session: AnswerSession, step: Callable[[], T]) -> T:
    """Run a step of the answer in a worker thread, auditing a failure before it propagates.
    Streams run their first step this way before they start, so bad input, unknown models
    and an unreachable store still get a proper status code instead of a stream."""
    try:
        return await run_in_threadpool(step)
    except Exception as exc:
        await run_in_threadpool(session.fail, f"error: {classify(exc)[1]}")
        raise


def _ask_json(session: AnswerSession, done: Completed, conversation_id: str) -> dict[str, Any]:
    return {
        "answer": done.answer.text,
        "answer_id": session.answer_id,
        "citations": [asdict(c) for c in done.answer.citations],
        "passages": passages_json(done.answer.passages, session.key.principal),
        "model": done.answer.model,
        "conversation_id": conversation_id,
        "abstained": done.abstained,
        "usage": usage_json(done),
    }


def _registered(services: Services, doc_id: str) -> RegisteredDocument:
    record = services.container.registry.get(doc_id)
    if record is None:
        raise NotFoundError(f"no document {doc_id}; list them with GET /v1/documents")
    return record


def _readable(services: Services, principal: Principal, doc_id: str) -> RegisteredDocument:
    """The document if the principal may read it; otherwise 'not found' (never revealing
    that a document outside their groups exists)."""
    record = services.container.registry.get(doc_id)
    if record is None or not (
        principal.admin or set(record.document.groups) & set(principal.groups)
    ):
        raise NotFoundError(f"no document {doc_id} that you can access")
    return record


def _rules_out(services: Services) -> list[AccessRuleOut]:
    return [
        AccessRuleOut(
            prefix=r.prefix,
            groups=list(r.groups),
            origin=r.origin,
            updated_at=iso_time(r.updated_at),
            updated_by=r.updated_by,
            documents=documents,
        )
        for r, documents in services.ingestor.access.listing()
    ]


def _change(change: Change) -> dict[str, Any]:
    return {
        "prefix": change.prefix,
        "before": list(change.before) if change.before is not None else None,
        "after": list(change.after) if change.after is not None else None,
        "documents": change.documents,
    }


def _admin_asks(request: Request, services: Services) -> bool:
    """Whether the request carries a valid admin key (for routes that need none)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    client = request.client.host if request.client else "unknown"
    try:
        services.sign_ins.check(client)
        key = services.db.authenticate(token.strip())
    except (EnclaveError, ApiError):
        return False
    if key is None:
        services.sign_ins.failed(client)
        return False
    return key.role == "admin"


def _body_limit(settings: Settings) -> Callable[[str, str], int]:
    uploads = int(settings.api.max_upload_mb * 1024 * 1024)
    others = settings.api.max_body_kb * 1024

    def limit_for(path: str, method: str) -> int:
        return uploads if (path, method) == ("/v1/documents", "POST") else others

    return limit_for


def _attachment(name: str) -> str:
    """A Content-Disposition that names the download (RFC 6266, any characters)."""
    quoted = quote(name)
    if quoted == name:
        return f'attachment; filename="{name}"'
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=utf-8''{quoted}"


def ingest_target(roots: list[Path], raw: str) -> Path:
    """The resolved file or folder ``raw`` names, if it lies inside one of ``roots``
    (links resolved); otherwise an :class:`InputError` that says why."""
    if not roots:
        raise InputError(
            "server-side folder ingestion is off: set ENCLAVE_API__INGEST_ROOTS to a JSON list "
            'of the folders it may read (e.g. ["/srv/docs"]), or upload the files instead'
        )
    allowed = [root.expanduser().resolve() for root in roots]
    if "\x00" in raw:
        raise InputError("the path contains a NUL byte; name the folder or file again")
    try:
        target = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise InputError(f"cannot resolve the path {raw!r}: {exc}") from None
    if not any(target.is_relative_to(root) for root in allowed):
        raise InputError(
            f"the path {raw!r} is outside the folders the server may ingest "
            f"({', '.join(str(r) for r in allowed)}); see ENCLAVE_API__INGEST_ROOTS"
        )
    if not target.exists():
        raise InputError(f"the path {raw!r} does not exist on the server; check the spelling")
    if not (target.is_file() or target.is_dir()):
        raise InputError(f"the path {raw!r} is not a regular file or folder")
    return target


def _names(values: list[str] | None, what: str) -> list[str] | None:
    """Group or tag names, stripped; None stays None (the default), none at all is an error."""
    if values is None:
        return None
    names = [v.strip() for v in values if v.strip()]
    if not names:
        raise InputError(f"{what} is empty; give at least one name or leave it out")
    return names


def _split(value: str | None, what: str) -> list[str] | None:
    """:func:`_names` of a comma-separated form field."""
    return None if value is None else _names(value.split(","), what)


class _JobProgress:
    """Ingestion progress written to the jobs table (at most every half second)."""

    def __init__(self, services: Services, job_id: str, offset: int) -> None:
        self._services = services
        self._job_id = job_id
        self._offset = offset
        self._files = offset
        self._chunks = 0
        self._last = 0.0

    def start(self, total_files: int) -> None:
        """``total_files``: the files this run processes, after ``offset`` done before it."""
        self._services.db.update_job(
            self._job_id, status="running", total_files=self._offset + total_files
        )

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        self._files += files
        self._chunks += chunks
        now = time.monotonic()
        if now - self._last >= 0.5:
            self._last = now
            self._services.db.update_job(self._job_id, done_files=self._files, chunks=self._chunks)


def _run_job(
    services: Services,
    job_id: str,
    paths: list[Path],
    groups: list[str] | None,
    tags: list[str] | None,
    rejected: list[dict[str, str]],
    actor: str,
    *,
    folder: bool = False,
) -> None:
    """Ingest ``paths`` and record per-file results: uploads (named by file name; a file
    that failed is removed from the upload's folder), or with ``folder`` server paths
    (each file under them, named by its full path)."""
    db = services.db
    try:
        db.update_job(job_id, status="running")
        progress = _JobProgress(services, job_id, len(rejected))
        report = services.ingestor.run(
            paths, groups=groups, tags=tags, progress=progress, actor=actor
        )
        failed = {f.source: f.reason for f in report.failed}
        results = list(rejected)
        files: list[tuple[str, str]] = []  # (source, shown as)
        for path in paths:
            if folder and path.is_dir():
                files += [(source_of(f), source_of(f)) for f in walk_files(path.resolve())]
            else:
                source = source_of(path.resolve())
                files.append((source, source if folder else path.name))
                if not folder and source in failed:
                    services.ingestor.discard_upload(path)
        for source, shown in files:
            if source in failed:
                results.append({"source": shown, "status": "failed", "reason": failed.pop(source)})
            else:
                results.append({"source": shown, "status": "ingested"})
        results += [  # failures of no listed file (e.g. a folder gone since the request)
            {"source": source, "status": "failed", "reason": reason}
            for source, reason in failed.items()
        ]
        m = services.metrics
        for result, count in (
            ("added", report.added),
            ("updated", report.updated),
            ("unchanged", report.unchanged),
            ("failed", len(report.failed) + len(rejected)),
        ):
            m.ingest_files.labels(result).inc(count)
        m.ingest_chunks.inc(report.chunks_written)
        db.update_job(
            job_id,
            status="done",
            total_files=len(results),
            done_files=len(results),
            chunks=report.chunks_written,
            results=results,
            warnings=report.warnings,
        )
    except Exception as exc:
        logger.exception("ingestion job %s failed", job_id)
        message = (
            str(exc)
            if isinstance(exc, EnclaveError)
            else f"internal error ({exc.__class__.__name__})"
        )
        db.update_job(job_id, status="failed", error=message)


def _job_json(job: Any) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "total_files": job.total_files,
        "done_files": job.done_files,
        "chunks": job.chunks,
        "results": job.results,
        "error": job.error,
        "warnings": job.warnings,
    }
