"""Markdown reports of the evaluation runs (``--report``; ``bench/reports/``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from serving.evaluation.datasets import HOLD_OUT_EVERY
from serving.evaluation.metrics import ANSWER_KS

if TYPE_CHECKING:
    from serving.evaluation.harness import AnswerRecallEval, GenerationEval, RetrievalEval

logger = logging.getLogger(__name__)


ANCHORS: dict[str, list[tuple[str, str, float]]] = {
    "scifact": [
        ("BM25 (bm25s, stemmed), measured on this machine", "nDCG@10", 0.686),
        ("all-MiniLM-L6-v2 dense, measured on this machine", "nDCG@10", 0.645),
        ("RRF (k=60) of those two, measured on this machine", "nDCG@10", 0.717),
        ("BM25 + ms-marco-MiniLM-L-6-v2 cross-encoder, published", "nDCG@10", 0.688),
        ("bge-small-en-v1.5 dense, published", "nDCG@10", 0.713),
    ]
}


def one_line(text: str) -> str:
    return " ".join(text.split())


def escape_markdown(text: str) -> str:
    # A body line must not become a heading, list or code block of its own making.
    return "\n".join(
        "\\" + line.lstrip() if line.lstrip()[:1] in ("#", ">", "-", "*", "+", "=") else line
        for line in text.splitlines()
    )


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
        ("Answers (not abstained) with at least one supported sentence", m["verified"]),
        ("Sentences supported by a passage span (all answers)", m["claims_supported"]),
        ("Supporting spans contain the gold answer", m["span_support"]),
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
