"""Labelled data: BEIR folders (SciFact) and COVID-QA, read from ``../shared/eval``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError

logger = logging.getLogger(__name__)


HOLD_OUT_EVERY = 20  # articles 0, 20, 40, ... are left out of the answer-quality index


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


def limit_questions(data: QaData, limit: int | None) -> list[tuple[str, str, str]]:
    """The first ``limit`` questions (all when None)."""
    if limit is None:
        return data.questions
    if limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    return data.questions[:limit]


def split_held_out(data: QaData, every: int = HOLD_OUT_EVERY) -> tuple[list[Record], set[str]]:
    """The articles to index, and the ids of the held-out ones (every ``every``-th)."""
    held = {a.id for a in data.articles[::every]}
    kept = [a for a in data.articles if a.id not in held]
    if not kept:
        raise InputError(f"{data.path}: holding out every {every}th article leaves none to index")
    return kept, held
