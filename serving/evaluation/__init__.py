"""Evaluation: measured quality on labelled data, through the product's own paths.

datasets.py   BEIR folders and COVID-QA (``../shared/eval``), held-out articles
metrics.py    exact match, token F1, containment, declines, ranking means, latency
harness.py    the indexes and the three evaluations (retrieval, answer recall, answers)
reports.py    Markdown reports
records.py    the JSON records ``GET /v1/quality`` serves
"""

from serving.evaluation.datasets import (
    BeirData,
    QaData,
    Record,
    limit_questions,
    load_beir,
    load_covidqa,
    split_held_out,
)
from serving.evaluation.harness import (
    evaluate_answer_recall,
    evaluate_generation,
    evaluate_retrieval,
    generation_questions,
    modes_for,
)
from serving.evaluation.metrics import (
    contains_answer,
    exact_match,
    says_not_covered,
    squad_normalise,
    token_f1,
)
from serving.evaluation.records import latest_eval_record, write_eval_record
from serving.evaluation.reports import answers_markdown, generation_markdown, retrieval_markdown

__all__ = [
    "BeirData",
    "QaData",
    "Record",
    "answers_markdown",
    "contains_answer",
    "evaluate_answer_recall",
    "evaluate_generation",
    "evaluate_retrieval",
    "exact_match",
    "generation_markdown",
    "generation_questions",
    "latest_eval_record",
    "limit_questions",
    "load_beir",
    "load_covidqa",
    "modes_for",
    "retrieval_markdown",
    "says_not_covered",
    "split_held_out",
    "squad_normalise",
    "token_f1",
    "write_eval_record",
]
