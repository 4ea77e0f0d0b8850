"""The evaluation harness: retrieval quality on BEIR data, answer recall and answer
quality on COVID-QA.

Both commands index their data into a collection of their own (``eval-<name>-<hash>``
in the configured store) through the real ingestion pipeline: the records are
written as Markdown files under ``<data_dir>/eval/<name>-<hash>/docs`` and ingested
like any folder, so parsing, chunking, embedding and incremental sync are the
product's own (a second run re-embeds nothing). Queries then go through the
same :class:`retrieval.search.Retriever` as the API, as an admin.

Ranking metrics come from ``pytrec_eval`` (the trec_eval implementation). A
document's rank is the rank of its best chunk.

Answer quality has the real :class:`serving.answers.Answerer` and the configured LLM
answer questions, scored against the gold answers with SQuAD's exact match and token F1.
It uses an index without a few held-out articles (every ``HOLD_OUT_EVERY``-th), whose
questions measure abstention. That index is a collection of its own
(``eval-<name>-answers-<hash>``): built once, reused by later runs.

Each run of ``enclave eval retrieval`` / ``enclave eval answers`` also leaves a record,
``<data_dir>/eval/<kind>-<UTC time>.json``, which the API's ``GET /v1/quality``
serves (the latest of each kind): :func:`write_eval_record`, :func:`latest_eval_record`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from backends.container import Container, build_container
from core.errors import InputError
from core.settings import DatabaseSettings, Settings
from core.types import Hit, Principal
from ingest.discover import source_of
from ingest.pipeline import Ingestor, IngestReport, ProgressListener
from retrieval.search import MODES, Retriever
from serving.answers import CITATION_MARKER, Answerer, Router, build_retriever
from serving.evaluation.datasets import (
    HOLD_OUT_EVERY,
    BeirData,
    QaData,
    Record,
    limit_questions,
    split_held_out,
)
from serving.evaluation.metrics import (
    ANSWER_KS,
    RANK_DEPTH,
    contains_answer,
    exact_match,
    mean,
    normalise,
    percentiles,
    run_measures,
    says_not_covered,
    share,
    token_f1,
)
from serving.evaluation.reports import escape_markdown, one_line

logger = logging.getLogger(__name__)


EVALUATOR = Principal(name="evaluation", admin=True)


@dataclass(slots=True)
class EvalIndex:
    """An evaluation collection, ready to query, and what indexing it took."""

    container: Container
    retriever: Retriever
    id_of_source: dict[str, str]
    report: IngestReport


def open_index(
    settings: Settings,
    name: str,
    origin: Path,
    records: Sequence[Record],
    progress: ProgressListener | None = None,
) -> EvalIndex:
    """Write ``records`` as Markdown files and ingest them into ``eval-<name>-<hash>``."""
    key = f"{_slug(name)}-{hashlib.sha256(str(origin.resolve()).encode()).hexdigest()[:8]}"
    workdir = settings.data_dir / "eval" / key
    docs = workdir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    id_of_source = _materialise(records, docs)
    registry = SecretStr(f"sqlite:///{(workdir / 'registry.db').resolve()}")
    container = build_container(
        settings.model_copy(
            update={
                "store": settings.store.model_copy(update={"collection": f"eval-{key}"[:64]}),
                "database": DatabaseSettings(url=registry),
            }
        )
    )
    try:
        report = Ingestor(container).run([docs], progress=progress)
        if report.failed:
            first = report.failed[0]
            raise InputError(
                f"{len(report.failed)} evaluation documents failed to ingest "
                f"(first: {first.source}: {first.reason})"
            )
        retriever = build_retriever(container)
    except BaseException:
        container.close()
        raise
    return EvalIndex(container, retriever, id_of_source, report)


def _materialise(records: Sequence[Record], folder: Path) -> dict[str, str]:
    """One Markdown file per record (rewritten only when it changed); stale files removed."""
    wanted: set[Path] = set()
    id_of_source: dict[str, str] = {}
    for record in records:
        digest = hashlib.sha256(record.id.encode()).hexdigest()[:8]
        path = folder / f"{_slug(record.id)[:60]}-{digest}.md"
        if path in wanted:
            raise InputError(f"record id {record.id!r} appears twice")
        wanted.add(path)
        body = escape_markdown(record.text)
        content = f"# {one_line(record.title)}\n\n{body}\n" if record.title.strip() else body
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        id_of_source[source_of(path.resolve())] = record.id
    for stale in folder.glob("*.md"):
        if stale not in wanted:
            stale.unlink()
    return id_of_source


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


@dataclass(slots=True)
class ModeResult:
    """Metrics of one search mode over every query."""

    mode: str
    metrics: dict[str, float]
    latency_ms: dict[str, float]
    queries: int
    empty: int = 0  # queries that returned nothing (relevance floor)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "queries": self.queries,
            "empty_results": self.empty,
            **{k: round(v, 4) for k, v in self.metrics.items()},
            **{f"latency_{k}_ms": round(v, 1) for k, v in self.latency_ms.items()},
        }


@dataclass(slots=True)
class RetrievalEval:
    """What ``enclave eval retrieval`` reports."""

    dataset: str
    documents: int
    chunks: int
    index_seconds: float
    embedded_chunks: int
    results: dict[str, ModeResult] = field(default_factory=dict)


def evaluate_retrieval(
    settings: Settings,
    data: BeirData,
    modes: Sequence[str],
    progress: ProgressListener | None = None,
    on_query: Callable[[], None] | None = None,
) -> RetrievalEval:
    """Index the BEIR data (cached) and score every mode on its test queries."""
    import pytrec_eval

    index = open_index(settings, data.name, data.folder, data.corpus, progress)
    try:
        chunks = index.container.store.count()
        per_doc = max(1.0, chunks / len(data.corpus))
        depth = min(1000, int(RANK_DEPTH * per_doc * 1.5))
        evaluator = pytrec_eval.RelevanceEvaluator(
            data.qrels, {"ndcg_cut.10", "recall.10", "recall.100"}
        )
        mrr = pytrec_eval.RelevanceEvaluator(data.qrels, {"recip_rank"})
        result = RetrievalEval(
            data.name, len(data.corpus), chunks, index.report.seconds, index.report.chunks_written
        )
        for mode in modes:
            ranked: dict[str, list[str]] = {}
            latencies = []
            for qid, text in data.queries.items():
                started = time.perf_counter()
                hits = index.retriever.search(text, EVALUATOR, top_k=depth, mode=mode)
                latencies.append((time.perf_counter() - started) * 1000)
                ranked[qid] = _documents(hits, index.id_of_source)[:RANK_DEPTH]
                if on_query:
                    on_query()
            scores = evaluator.evaluate(run_measures(ranked, RANK_DEPTH))
            rr = mrr.evaluate(run_measures(ranked, 10))
            queries = list(data.queries)
            result.results[mode] = ModeResult(
                mode=mode,
                metrics={
                    "ndcg@10": mean(scores, queries, "ndcg_cut_10"),
                    "recall@10": mean(scores, queries, "recall_10"),
                    "recall@100": mean(scores, queries, "recall_100"),
                    "mrr@10": mean(rr, queries, "recip_rank"),
                },
                latency_ms=percentiles(latencies),
                queries=len(queries),
                empty=sum(1 for docs in ranked.values() if not docs),
            )
        return result
    finally:
        index.container.close()


def _documents(hits: Sequence[Hit], id_of_source: dict[str, str]) -> list[str]:
    """Record ids in rank order of their best chunk."""
    ranked = dict.fromkeys(id_of_source.get(h.chunk.source, h.chunk.source) for h in hits)
    return list(ranked)


@dataclass(slots=True)
class AnswerRecallEval:
    """What ``enclave eval answers`` reports: does a retrieved chunk hold the gold answer?"""

    dataset: str
    documents: int
    chunks: int
    questions: int
    index_seconds: float
    results: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_answer_recall(
    settings: Settings,
    data: QaData,
    modes: Sequence[str],
    limit: int | None = None,
    progress: ProgressListener | None = None,
    on_query: Callable[[], None] | None = None,
) -> AnswerRecallEval:
    """Ingest the articles (cached) and measure answer recall@k per mode."""
    questions = limit_questions(data, limit)
    index = open_index(settings, data.name, data.path, data.articles, progress)
    try:
        result = AnswerRecallEval(
            data.name,
            len(data.articles),
            index.container.store.count(),
            len(questions),
            index.report.seconds,
        )
        depth = max(ANSWER_KS)
        for mode in modes:
            first_ranks: list[int | None] = []
            latencies = []
            for question, _, answer in questions:
                started = time.perf_counter()
                hits = index.retriever.search(question, EVALUATOR, top_k=depth, mode=mode)
                latencies.append((time.perf_counter() - started) * 1000)
                gold = normalise(answer)
                first_ranks.append(
                    next(
                        (i for i, h in enumerate(hits, 1) if gold in normalise(h.chunk.text)), None
                    )
                )
                if on_query:
                    on_query()
            n = max(1, len(first_ranks))
            metrics = {
                f"answer_recall@{k}": sum(1 for r in first_ranks if r is not None and r <= k) / n
                for k in ANSWER_KS
            }
            metrics["mrr@10"] = sum(1 / r for r in first_ranks if r is not None) / n
            latency = percentiles(latencies)
            metrics.update({f"latency_{k}_ms": v for k, v in latency.items()})
            result.results[mode] = metrics
        return result
    finally:
        index.container.close()


@dataclass(frozen=True, slots=True)
class Asked:
    """A question put to the answerer; ``answerable`` is False when its article is
    not in the index."""

    question: str
    gold: str
    answerable: bool
    article: str


def generation_questions(
    data: QaData, generate: int, abstain: int, every: int = HOLD_OUT_EVERY
) -> list[Asked]:
    """The first ``generate`` questions of indexed articles, then ``abstain`` questions of
    held-out articles spread evenly over them."""
    if generate < 0 or abstain < 0:
        raise InputError("--generate and --abstain take a number of questions (0 or more)")
    if not generate and not abstain:
        return []
    _, held = split_held_out(data, every)
    asked = [Asked(q, a, article not in held, article) for q, article, a in data.questions]
    answerable = [a for a in asked if a.answerable][:generate]
    unanswerable = [a for a in asked if not a.answerable]
    if abstain < len(unanswerable):
        unanswerable = [unanswerable[i * len(unanswerable) // abstain] for i in range(abstain)]
    return answerable + unanswerable


@dataclass(frozen=True, slots=True)
class GeneratedAnswer:
    """One generated answer and how it scores against the gold answer."""

    question: str
    gold: str
    answerable: bool
    answer: str  # without the [n] markers
    model: str
    abstained: bool  # nothing above the relevance floor: no model was called
    not_covered: bool  # the model itself said the documents do not cover the question
    exact_match: float
    f1: float
    contains_gold: bool
    cited: bool  # at least one citation
    supported: bool  # a cited passage contains the gold answer
    claims: int  # sentences checked against the passages
    claims_supported: int  # of those, found in a passage span
    span_support: bool  # a supporting span contains the gold answer
    first_token_ms: float | None
    total_ms: float
    completion_tokens: int
    passages: tuple[str, ...] = field(default=(), repr=False)  # the chunk texts it was given

    def as_dict(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "passages"}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


@dataclass(slots=True)
class GenerationEval:
    """What ``enclave eval answers --generate`` reports."""

    dataset: str
    mode: str
    documents: int  # articles indexed
    held_out: int  # articles left out of the index
    chunks: int
    answers: list[GeneratedAnswer] = field(default_factory=list)

    @property
    def model(self) -> str:
        return ", ".join(sorted({a.model for a in self.answers})) or "-"

    def metrics(self) -> dict[str, float]:
        answerable = [a for a in self.answers if a.answerable]
        unanswerable = [a for a in self.answers if not a.answerable]
        generated = [a for a in self.answers if not a.abstained]
        first_token = percentiles(
            [a.first_token_ms for a in generated if a.first_token_ms is not None]
        )
        total = percentiles([a.total_ms for a in generated])
        return {
            "answerable_questions": len(answerable),
            "exact_match": share(a.exact_match for a in answerable),
            "f1": share(a.f1 for a in answerable),
            "contains_gold": share(a.contains_gold for a in answerable),
            "cited": share(a.cited for a in answerable),
            "citation_support": share(a.supported for a in answerable),
            "verified": share(a.claims_supported > 0 for a in answerable if not a.abstained),
            "claims_supported": (
                sum(a.claims_supported for a in generated)
                / max(sum(a.claims for a in generated), 1)
            ),
            "span_support": share(a.span_support for a in answerable),
            "answerable_abstained": share(a.abstained for a in answerable),
            "answerable_not_covered": share(a.not_covered for a in answerable),
            "held_out_questions": len(unanswerable),
            "held_out_abstained": share(a.abstained for a in unanswerable),
            "held_out_not_covered": share(a.not_covered for a in unanswerable),
            **{f"first_token_{k}_ms": v for k, v in first_token.items()},
            **{f"latency_{k}_ms": v for k, v in total.items()},
            "completion_tokens_mean": share(a.completion_tokens for a in generated),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "mode": self.mode,
            "articles_indexed": self.documents,
            "articles_held_out": self.held_out,
            "chunks": self.chunks,
            **{k: round(v, 4) for k, v in self.metrics().items()},
            "answers": [a.as_dict() for a in self.answers],
        }


def evaluate_generation(
    settings: Settings,
    data: QaData,
    generate: int,
    abstain: int = 0,
    mode: str = "hybrid",
    progress: ProgressListener | None = None,
    on_answer: Callable[[], None] | None = None,
) -> GenerationEval:
    """Index the articles but the held-out ones (cached) and have the configured LLM answer
    the questions of :func:`generation_questions`, as an admin, in search mode ``mode``."""
    asked = generation_questions(data, generate, abstain)
    kept, held = split_held_out(data)
    settings = settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"mode": mode})}
    )
    index = open_index(settings, f"{data.name}-answers", data.path, kept, progress)
    try:
        answerer = Answerer(
            index.retriever, Router(index.container.generators(), settings.llm), settings.llm
        )
        result = GenerationEval(
            data.name, mode, len(kept), len(held), index.container.store.count()
        )
        for item in asked:
            result.answers.append(_generate(answerer, item))
            if on_answer:
                on_answer()
        return result
    finally:
        index.container.close()


def _generate(answerer: Answerer, asked: Asked) -> GeneratedAnswer:
    started = time.perf_counter()
    done = answerer.answer(asked.question, EVALUATOR)
    total_ms = (time.perf_counter() - started) * 1000
    text = " ".join(CITATION_MARKER.sub(" ", done.answer.text).split())
    passages = tuple(hit.chunk.text for hit in done.answer.passages)
    cited = [passages[c.n - 1] for c in done.answer.citations]
    first_token = done.timings.get("first_token")
    return GeneratedAnswer(
        question=asked.question,
        gold=asked.gold,
        answerable=asked.answerable,
        answer=text,
        model=done.answer.model,
        abstained=done.abstained,
        not_covered=not done.abstained and says_not_covered(text),
        exact_match=exact_match(text, asked.gold),
        f1=token_f1(text, asked.gold),
        contains_gold=contains_answer(text, asked.gold),
        cited=bool(cited),
        supported=any(contains_answer(passage, asked.gold) for passage in cited),
        claims=len(done.answer.claims),
        claims_supported=sum(c.supported for c in done.answer.claims),
        span_support=any(
            c.quote is not None and contains_answer(c.quote, asked.gold) for c in done.answer.claims
        ),
        first_token_ms=first_token * 1000 if first_token is not None else None,
        total_ms=total_ms,
        completion_tokens=done.usage.completion_tokens,
        passages=passages,
    )


def modes_for(mode: str) -> list[str]:
    """``all`` -> every mode; otherwise the one named (validated)."""
    if mode == "all":
        return list(MODES)
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)} or all")
    return [mode]
