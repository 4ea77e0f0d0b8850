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

Answer quality has the real :class:`serving.answering.Answerer` and the configured LLM
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
import json
import logging
import os
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import SecretStr

from backends.container import Container, build_container
from core.errors import InputError
from core.settings import DatabaseSettings, Settings
from core.types import Hit, Principal
from ingest.pipeline import Ingestor, IngestReport, ProgressListener, source_of
from retrieval.search import MODES, Retriever
from serving.answering import CITATION_MARKER, Answerer, Router
from serving.retriever import build_retriever

logger = logging.getLogger(__name__)
EvalKind = Literal["retrieval", "answers"]

EVALUATOR = Principal(name="evaluation", admin=True)
RANK_DEPTH = 100  # documents ranked per query (Recall@100)
ANSWER_KS = (1, 5, 10)
HOLD_OUT_EVERY = 20  # articles 0, 20, 40, ... are left out of the answer-quality index
# The model saying, in its own words, that the passages do not answer the question.
NOT_COVERED_PHRASES = (
    "do not cover",
    "does not cover",
    "do not contain",
    "does not contain",
    "not mentioned",
    "no information",
)

# Figures to compare against, shown in reports for the dataset of the same name.
ANCHORS: dict[str, list[tuple[str, str, float]]] = {
    "scifact": [
        ("BM25 (bm25s, stemmed), measured on this machine", "nDCG@10", 0.686),
        ("all-MiniLM-L6-v2 dense, measured on this machine", "nDCG@10", 0.645),
        ("RRF (k=60) of those two, measured on this machine", "nDCG@10", 0.717),
        ("BM25 + ms-marco-MiniLM-L-6-v2 cross-encoder, published", "nDCG@10", 0.688),
        ("bge-small-en-v1.5 dense, published", "nDCG@10", 0.713),
    ]
}


# -- data ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Record:
    """One document to index: an id the labels use, a title and a body."""

    id: str
    title: str
    text: str


@dataclass(slots=True)
class BeirData:
    """A BEIR-format directory: corpus, queries and test judgements."""

    name: str
    folder: Path
    corpus: list[Record]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path) -> BeirData:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv``; clear errors if not."""
    folder = folder.expanduser()
    paths = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(
            f"{folder} is not a BEIR-format folder: missing {', '.join(missing)} "
            "(expected corpus.jsonl, queries.jsonl and qrels/test.tsv)"
        )
    corpus = [
        Record(str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or ""))
        for row in _jsonl(paths[0], ("_id",))
    ]
    queries = {str(row["_id"]): str(row["text"]) for row in _jsonl(paths[1], ("_id", "text"))}
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(paths[2].read_text(encoding="utf-8").splitlines(), 1):
        cols = line.strip().split("\t")
        if not line.strip() or (n == 1 and not cols[-1].lstrip("-").isdigit()):
            continue  # blank line or header
        if len(cols) != 3 or not cols[2].lstrip("-").isdigit():
            raise InputError(f"{paths[2]} line {n}: expected query-id<TAB>corpus-id<TAB>score")
        qrels.setdefault(cols[0], {})[cols[1]] = int(cols[2])
    queries = {q: text for q, text in queries.items() if q in qrels}
    if not corpus or not queries:
        raise InputError(f"{folder}: no documents, or no query with judgements in qrels/test.tsv")
    return BeirData(folder.resolve().name, folder, corpus, queries, qrels)


def _jsonl(path: Path, required: Sequence[str]) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path} line {n} is not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or any(k not in row for k in required):
                raise InputError(f"{path} line {n}: needs the fields {', '.join(required)}")
            yield row


@dataclass(slots=True)
class QaData:
    """A SQuAD-format file: its articles, and (question, article id, gold answer) triples."""

    name: str
    path: Path
    articles: list[Record]
    questions: list[tuple[str, str, str]]


def load_covidqa(path: Path) -> QaData:
    """COVID-QA (SQuAD format): the articles, and each question with its gold answer."""
    try:
        data = json.loads(path.expanduser().read_text(encoding="utf-8"))["data"]
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(f"{path} is not a SQuAD-format JSON file (no 'data' list)") from None
    articles: list[Record] = []
    questions: list[tuple[str, str, str]] = []
    for i, article in enumerate(data):
        article_id = str(article.get("document_id") or i)
        paragraphs = article.get("paragraphs") or []
        text = "\n\n".join(str(p.get("context", "")) for p in paragraphs)
        articles.append(Record(article_id, str(article.get("title") or ""), text))
        for p in paragraphs:
            for qa in p.get("qas", []):
                answers = [a["text"] for a in qa.get("answers", []) if a.get("text", "").strip()]
                if answers:
                    questions.append((str(qa["question"]), article_id, answers[0]))
    return QaData(path.stem, path, articles, questions)


# -- indexing -----------------------------------------------------------------------------
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
        body = _escape_markdown(record.text)
        content = f"# {_one_line(record.title)}\n\n{body}\n" if record.title.strip() else body
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        id_of_source[source_of(path.resolve())] = record.id
    for stale in folder.glob("*.md"):
        if stale not in wanted:
            stale.unlink()
    return id_of_source


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _escape_markdown(text: str) -> str:
    # A body line must not become a heading, list or code block of its own making.
    return "\n".join(
        "\\" + line.lstrip() if line.lstrip()[:1] in ("#", ">", "-", "*", "+", "=") else line
        for line in text.splitlines()
    )


# -- retrieval quality --------------------------------------------------------------------
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
            scores = evaluator.evaluate(_run(ranked, RANK_DEPTH))
            rr = mrr.evaluate(_run(ranked, 10))
            queries = list(data.queries)
            result.results[mode] = ModeResult(
                mode=mode,
                metrics={
                    "ndcg@10": _mean(scores, queries, "ndcg_cut_10"),
                    "recall@10": _mean(scores, queries, "recall_10"),
                    "recall@100": _mean(scores, queries, "recall_100"),
                    "mrr@10": _mean(rr, queries, "recip_rank"),
                },
                latency_ms=_percentiles(latencies),
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


def _run(ranked: dict[str, list[str]], cut: int) -> dict[str, dict[str, float]]:
    """A trec_eval run of the first ``cut`` documents: scores strictly decreasing by rank."""
    return {q: {d: float(cut - i) for i, d in enumerate(docs[:cut])} for q, docs in ranked.items()}


def _mean(scores: dict[str, dict[str, float]], queries: Sequence[str], measure: str) -> float:
    # A query with no retrieved document is missing from pytrec_eval's output: it scores 0.
    return float(np.mean([scores.get(q, {}).get(measure, 0.0) for q in queries]))


def _percentiles(latencies: Sequence[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": 0.0, "p95": 0.0}
    return {
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
    }


# -- answer recall ------------------------------------------------------------------------
@dataclass(slots=True)
class AnswerRecallEval:
    """What ``enclave eval answers`` reports: does a retrieved chunk hold the gold answer?"""

    dataset: str
    documents: int
    chunks: int
    questions: int
    index_seconds: float
    results: dict[str, dict[str, float]] = field(default_factory=dict)


def limit_questions(data: QaData, limit: int | None) -> list[tuple[str, str, str]]:
    """The first ``limit`` questions (all when None)."""
    if limit is None:
        return data.questions
    if limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    return data.questions[:limit]


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
            latency = _percentiles(latencies)
            metrics.update({f"latency_{k}_ms": v for k, v in latency.items()})
            result.results[mode] = metrics
        return result
    finally:
        index.container.close()


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces (parsing may change spacing/punctuation)."""
    return " ".join(re.findall(r"\w+", text.lower()))


# -- answer quality -----------------------------------------------------------------------
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalise(text: str) -> str:
    """SQuAD's official answer normalisation: lower case, no punctuation, no articles
    (a, an, the), single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, gold: str) -> float:
    """SQuAD exact match: 1.0 when the normalised texts are equal."""
    return float(squad_normalise(prediction) == squad_normalise(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1: harmonic mean of precision and recall of the normalised tokens."""
    predicted, expected = squad_normalise(prediction).split(), squad_normalise(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def contains_answer(text: str, gold: str) -> bool:
    """The normalised gold answer occurs in the normalised text, on word boundaries."""
    expected = squad_normalise(gold)
    return bool(expected) and f" {expected} " in f" {squad_normalise(text)} "


def says_not_covered(text: str) -> bool:
    """The text says the documents do not answer the question (see NOT_COVERED_PHRASES)."""
    lowered = " ".join(text.lower().split())
    return any(phrase in lowered for phrase in NOT_COVERED_PHRASES)


@dataclass(frozen=True, slots=True)
class Asked:
    """A question put to the answerer; ``answerable`` is False when its article is
    not in the index."""

    question: str
    gold: str
    answerable: bool
    article: str


def split_held_out(data: QaData, every: int = HOLD_OUT_EVERY) -> tuple[list[Record], set[str]]:
    """The articles to index, and the ids of the held-out ones (every ``every``-th)."""
    held = {a.id for a in data.articles[::every]}
    kept = [a for a in data.articles if a.id not in held]
    if not kept:
        raise InputError(f"{data.path}: holding out every {every}th article leaves none to index")
    return kept, held


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
        first_token = _percentiles(
            [a.first_token_ms for a in generated if a.first_token_ms is not None]
        )
        total = _percentiles([a.total_ms for a in generated])
        return {
            "answerable_questions": len(answerable),
            "exact_match": _share(a.exact_match for a in answerable),
            "f1": _share(a.f1 for a in answerable),
            "contains_gold": _share(a.contains_gold for a in answerable),
            "cited": _share(a.cited for a in answerable),
            "citation_support": _share(a.supported for a in answerable),
            "answerable_abstained": _share(a.abstained for a in answerable),
            "answerable_not_covered": _share(a.not_covered for a in answerable),
            "held_out_questions": len(unanswerable),
            "held_out_abstained": _share(a.abstained for a in unanswerable),
            "held_out_not_covered": _share(a.not_covered for a in unanswerable),
            **{f"first_token_{k}_ms": v for k, v in first_token.items()},
            **{f"latency_{k}_ms": v for k, v in total.items()},
            "completion_tokens_mean": _share(a.completion_tokens for a in generated),
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


def _share(values: Iterable[float]) -> float:
    """The mean (of booleans: the share that is true); 0 for none."""
    values = list(values)
    return float(np.mean(values)) if values else 0.0


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
        first_token_ms=first_token * 1000 if first_token is not None else None,
        total_ms=total_ms,
        completion_tokens=done.usage.completion_tokens,
        passages=passages,
    )


# -- reports ------------------------------------------------------------------------------
def retrieval_markdown(ev: RetrievalEval) -> str:
    """The report the README shows: mode x metric, then the anchors for this dataset."""
    lines = [
        f"### Retrieval quality: {ev.dataset} ({ev.documents:,} documents, "
        f"{ev.chunks:,} chunks, {next(iter(ev.results.values())).queries} queries)",
        "",
        "| Mode | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ev.results.values():
        m = r.metrics
        lines.append(
            f"| {r.mode} | {m['ndcg@10']:.3f} | {m['recall@10']:.3f} | {m['recall@100']:.3f} "
            f"| {m['mrr@10']:.3f} | {r.latency_ms['p50']:.0f} | {r.latency_ms['p95']:.0f} |"
        )
    anchors = ANCHORS.get(ev.dataset.lower())
    if anchors:
        lines += ["", "| Anchor | Metric | Value |", "|---|---|---|"]
        lines += [f"| {name} | {metric} | {value:.3f} |" for name, metric, value in anchors]
    return "\n".join(lines) + "\n"


def answers_markdown(ev: AnswerRecallEval) -> str:
    """Answer recall@k per mode as a Markdown table."""
    lines = [
        f"### Answer recall: {ev.dataset} ({ev.documents} articles, {ev.chunks:,} chunks, "
        f"{ev.questions:,} questions)",
        "",
        "| Mode | "
        + " | ".join(f"recall@{k}" for k in ANSWER_KS)
        + " | MRR@10 | p50 ms | p95 ms |",
        "|---|" + "---|" * (len(ANSWER_KS) + 3),
    ]
    for mode, m in ev.results.items():
        cells = " | ".join(f"{m[f'answer_recall@{k}']:.3f}" for k in ANSWER_KS)
        lines.append(
            f"| {mode} | {cells} | {m['mrr@10']:.3f} | {m['latency_p50_ms']:.0f} "
            f"| {m['latency_p95_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def generation_markdown(ev: GenerationEval) -> str:
    """Answer quality as Markdown: answerable questions, held-out questions, cost."""
    m = ev.metrics()
    answerable, held_out = int(m["answerable_questions"]), int(m["held_out_questions"])
    rows = [
        ("Exact match (SQuAD)", m["exact_match"]),
        ("Token F1 (SQuAD)", m["f1"]),
        ("Answer contains the gold answer", m["contains_gold"]),
        ("Answers with at least one citation", m["cited"]),
        ("Cited passages contain the gold answer", m["citation_support"]),
        ("Abstained (nothing above the relevance floor)", m["answerable_abstained"]),
        ("Model said the documents do not cover it", m["answerable_not_covered"]),
    ]
    lines = [
        f"### Answer quality: {ev.dataset} ({ev.model}, {ev.mode} search)",
        "",
        f"Index: {ev.documents} articles ({ev.chunks:,} chunks); {ev.held_out} articles "
        f"(every {HOLD_OUT_EVERY}th) held out of it for the abstention questions. Answers are "
        "scored without their [n] markers, after SQuAD's normalisation.",
        "",
        f"| {answerable} answerable questions | Share |",
        "|---|---|",
        *(f"| {name} | {value:.3f} |" for name, value in rows),
        "",
        f"| {held_out} questions about held-out articles | Share |",
        "|---|---|",
        f"| Abstained (nothing above the relevance floor) | {m['held_out_abstained']:.3f} |",
        f"| Model said the documents do not cover it | {m['held_out_not_covered']:.3f} |",
        "",
        "| Per generated answer | p50 | p95 |",
        "|---|---|---|",
        f"| Time to first token (ms) | {m['first_token_p50_ms']:.0f} "
        f"| {m['first_token_p95_ms']:.0f} |",
        f"| Total latency (ms) | {m['latency_p50_ms']:.0f} | {m['latency_p95_ms']:.0f} |",
        "",
        f"Completion tokens per answer (mean): {m['completion_tokens_mean']:.0f}.",
    ]
    return "\n".join(lines) + "\n"


def modes_for(mode: str) -> list[str]:
    """``all`` -> every mode; otherwise the one named (validated)."""
    if mode == "all":
        return list(MODES)
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)} or all")
    return [mode]


# -- records ------------------------------------------------------------------------------
def eval_records_dir(data_dir: Path) -> Path:
    """Where evaluation records are kept (next to the evaluation indexes)."""
    return data_dir / "eval"


def write_eval_record(
    data_dir: Path,
    kind: EvalKind,
    dataset: str,
    results: dict[str, Any],
    now: datetime | None = None,
) -> Path:
    """Write ``<data_dir>/eval/<kind>-<UTC YYYYmmddTHHMMSS>.json`` atomically (a run in the
    same second replaces the earlier record) and return its path."""
    created = (now or datetime.now(UTC)).astimezone(UTC)
    folder = eval_records_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{created.strftime('%Y%m%dT%H%M%S')}.json"
    record = {
        "kind": kind,
        "dataset": dataset,
        "created_at": created.isoformat(timespec="seconds"),
        "results": results,
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    partial.replace(path)
    return path


def latest_eval_record(data_dir: Path, kind: EvalKind) -> dict[str, Any] | None:
    """The newest readable record of ``kind``, or None; unreadable files are skipped
    (and logged)."""
    folder = eval_records_dir(data_dir)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{kind}-*.json"), reverse=True):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("skipping unreadable evaluation record %s: %s", path, exc)
            continue
        if not isinstance(record, dict) or record.get("kind") != kind:
            logger.warning("skipping evaluation record %s: not a %s record", path, kind)
            continue
        return record
    return None
