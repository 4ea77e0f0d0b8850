"""What the routes use, built once per app from the container: the answerer, the app
database (on the container's engine), limits, metrics and the ingestion job runner."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from backends.container import Container
from backends.sql.app import ApiKey, AppDatabase
from core.errors import LLMUnavailableError
from core.settings import Settings
from ingest.pipeline import Ingestor
from serving.answers import Answerer, Completed, Router, build_retriever
from serving.answers.session import AnswerSession
from serving.api.jobs import JobRunner
from serving.api.limits import FailureThrottle, InFlight, RateLimiter, limit_storage
from serving.api.metrics import Metrics

logger = logging.getLogger(__name__)


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
    jobs: JobRunner = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = JobRunner(self.settings, self.db, self.ingestor, self.metrics)

    def session(self, key: ApiKey, kind: str, question: str, **options: object) -> AnswerSession:
        """An audited answer for ``key`` (``options``: history, conversation_id, model,
        filters, top_k), counted among the key's answers in progress."""
        return AnswerSession(
            self.answerer,
            self.db,
            key_id=key.id,
            principal=key.principal,
            kind=kind,
            question=question,
            max_question_chars=self.settings.retrieval.max_query_chars,
            redact_audit=self.settings.api.redact_audit,
            acquire=lambda: self.answering.acquire(key.id),
            on_done=self._observe,
            **options,  # type: ignore[arg-type]
        )

    def _observe(self, done: Completed) -> None:
        self.metrics.observe_stages(done.timings)
        self.metrics.tokens.labels(done.answer.model, "prompt").inc(done.usage.prompt_tokens)
        self.metrics.tokens.labels(done.answer.model, "completion").inc(
            done.usage.completion_tokens
        )

    def close(self) -> None:
        self.jobs.close()
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
    storage = limit_storage(settings)
    return Services(
        settings=settings,
        container=container,
        db=AppDatabase(container.database),
        metrics=metrics or Metrics(),
        limiter=RateLimiter(settings.api.rate_limit_per_minute, storage),
        answerer=Answerer(retriever, Router(generators, settings.llm), settings.llm),
        ingestor=Ingestor(container),
        sign_ins=FailureThrottle(settings.api.auth_failures_per_minute, storage),
        answering=InFlight(settings.api.max_answers_per_key),
    )
