"""Scores: SQuAD's exact match and token F1, answer containment and declines, ranking
means over trec_eval's per-query figures, latency percentiles.
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


RANK_DEPTH = 100  # documents ranked per query (Recall@100)


ANSWER_KS = (1, 5, 10)


NOT_COVERED_PHRASES = (
    "do not cover",
    "does not cover",
    "do not contain",
    "does not contain",
    "not mentioned",
    "no information",
)


def run_measures(ranked: dict[str, list[str]], cut: int) -> dict[str, dict[str, float]]:
    """A trec_eval run of the first ``cut`` documents: scores strictly decreasing by rank."""
    return {q: {d: float(cut - i) for i, d in enumerate(docs[:cut])} for q, docs in ranked.items()}


def mean(scores: dict[str, dict[str, float]], queries: Sequence[str], measure: str) -> float:
    # A query with no retrieved document is missing from pytrec_eval's output: it scores 0.
    return float(np.mean([scores.get(q, {}).get(measure, 0.0) for q in queries]))


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": 0.0, "p95": 0.0}
    return {
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
    }


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces (parsing may change spacing/punctuation)."""
    return " ".join(re.findall(r"\w+", text.lower()))


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


def share(values: Iterable[float]) -> float:
    """The mean (of booleans: the share that is true); 0 for none."""
    values = list(values)
    return float(np.mean(values)) if values else 0.0
