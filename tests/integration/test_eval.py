"""The evaluation harness on tiny hand-made data whose metrics can be checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from core.errors import InputError
from core.settings import RetrievalSettings, Settings
from serving.evaluation import evaluate_answer_recall, evaluate_retrieval, load_beir, load_covidqa
from tests.integration.test_cli import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CORPUS = {
    "d1": (
        "Photosynthesis",
        "Plants turn sunlight into chemical energy in their leaves, "
        "using chlorophyll to convert light, water and carbon dioxide into sugar.",
    ),
    "d2": (
        "Volcanoes",
        "A volcano erupts when magma from the mantle rises through the crust "
        "and escapes as lava, ash and gas.",
    ),
    "d3": (
        "Vaccines",
        "Vaccines train the immune system: they show it a harmless piece of a "
        "pathogen so that it learns to produce antibodies before a real infection.",
    ),
    "d4": (
        "Black holes",
        "A black hole is a region where gravity is so strong that nothing, "
        "not even light, escapes past the event horizon.",
    ),
    "d5": (
        "Honey bees",
        "Honey bees pollinate flowering plants and store nectar as honey in "
        "the wax cells of their hive.",
    ),
    "d6": (
        "Tides",
        "Ocean tides are caused by the gravitational pull of the Moon and the Sun "
        "on the Earth's oceans, raising and lowering the sea twice a day.",
    ),
}
QUERIES = {
    "q1": "How do plants turn sunlight into energy?",
    "q2": "What causes ocean tides?",
    "q3": "How do vaccines train the immune system?",
    "q4": "A query without judgements is not evaluated",
}
# q3 has a second relevant document that is not in the corpus: it can never be found.
QRELS = [("q1", "d1", 1), ("q2", "d6", 1), ("q3", "d3", 1), ("q3", "d-missing", 1)]
# Each query finds its document first, so by hand:
#   nDCG@10 = (1 + 1 + 1 / (1 + 1/log2(3))) / 3, Recall@10 = Recall@100 = (1 + 1 + 0.5) / 3,
#   MRR@10 = 1.
NDCG = (2 + 1 / (1 + 1 / math.log2(3))) / 3
RECALL = 2.5 / 3


def write_beir(folder: Path, corpus: dict[str, tuple[str, str]]) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, (title, text) in corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    rows = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in QRELS)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_metrics_match_the_hand_computed_values_and_reruns_reuse_the_index(
    tmp_path: Path,
) -> None:
    data = write_beir(tmp_path / "tiny", CORPUS)
    settings = Settings(data_dir=tmp_path / "data")
    first = evaluate_retrieval(settings, load_beir(data), ["dense", "sparse", "hybrid"])
    assert (first.documents, first.embedded_chunks) == (6, first.chunks)
    for mode, result in first.results.items():
        assert result.queries == 3, mode
        assert result.metrics["ndcg@10"] == pytest.approx(NDCG, abs=1e-4), mode
        assert result.metrics["recall@10"] == pytest.approx(RECALL, abs=1e-4), mode
        assert result.metrics["recall@100"] == pytest.approx(RECALL, abs=1e-4), mode
        assert result.metrics["mrr@10"] == pytest.approx(1.0), mode
        assert 0 < result.latency_ms["p50"] <= result.latency_ms["p95"]

    again = evaluate_retrieval(settings, load_beir(data), ["hybrid"])
    assert again.embedded_chunks == 0  # cached: nothing re-embedded
    assert again.results["hybrid"].metrics == first.results["hybrid"].metrics

    changed = dict(CORPUS)
    changed["d2"] = ("Volcanoes", "Volcanic eruptions: magma, lava and ash.")
    del changed["d5"]
    write_beir(data, changed)
    third = evaluate_retrieval(settings, load_beir(data), ["hybrid"])
    assert third.documents == 5
    assert 0 < third.embedded_chunks < first.embedded_chunks  # only the changed document
    assert third.chunks == first.chunks - 1


def test_a_folder_that_is_not_beir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not a BEIR-format folder.*queries.jsonl"):
        load_beir(tmp_path)
    data = write_beir(tmp_path / "bad", CORPUS)
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "fine"}\nnot json\n')
    with pytest.raises(InputError, match=r"queries.jsonl line 2 is not JSON"):
        load_beir(data)


SQUAD = {
    "data": [
        {
            "title": "Incubation",
            "document_id": 1,
            "paragraphs": [
                {
                    "context": "The incubation period of the virus is between two and "
                    "fourteen days, with a median of five days. Most patients develop "
                    "fever and a dry cough.",
                    "qas": [
                        {
                            "question": "What is the median incubation period?",
                            "answers": [{"text": "five days", "answer_start": 80}],
                        },
                        {
                            "question": "Which symptoms do most patients develop?",
                            "answers": [{"text": "fever and a dry cough", "answer_start": 120}],
                        },
                    ],
                }
            ],
        },
        {
            "title": "Transmission",
            "document_id": 2,
            "paragraphs": [
                {
                    "context": "The virus spreads mainly through respiratory droplets "
                    "produced when an infected person coughs or sneezes.",
                    "qas": [
                        {
                            "question": "How does the virus spread?",
                            "answers": [{"text": "respiratory droplets", "answer_start": 30}],
                        }
                    ],
                }
            ],
        },
    ]
}


def test_answer_recall_counts_chunks_that_contain_the_gold_answer(tmp_path: Path) -> None:
    path = tmp_path / "tiny_qa.json"
    path.write_text(json.dumps(SQUAD))
    # No relevance floor: MiniLM gives "Which symptoms..." a cosine of 0.15 with its
    # gold chunk, under the default floor (0.2), and this test is about the counting.
    settings = Settings(data_dir=tmp_path / "data", retrieval=RetrievalSettings(relevance_floor=-1))
    result = evaluate_answer_recall(settings, load_covidqa(path), ["dense", "sparse", "hybrid"])
    assert (result.documents, result.questions) == (2, 3)
    for mode, metrics in result.results.items():
        # Two articles: the gold chunk is first or second; hybrid and BM25 get all first.
        assert metrics["answer_recall@5"] == pytest.approx(1.0), mode
        first = metrics["answer_recall@1"]
        if mode != "dense":  # MiniLM alone may rank the other article first
            assert first == pytest.approx(1.0), mode
        assert metrics["mrr@10"] == pytest.approx(first + (1 - first) / 2), mode
    limited = evaluate_answer_recall(settings, load_covidqa(path), ["hybrid"], limit=1)
    assert limited.questions == 1
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(InputError, match="not a SQuAD-format JSON"):
        load_covidqa(bad)


def test_eval_cli_prints_one_object_or_one_per_mode(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny", CORPUS)
    report = tmp_path / "report.md"
    every = run(["eval", "retrieval", str(data), "--json", "--report", str(report)], tmp_path / "d")
    assert every.returncode == 0, every.stderr
    by_mode = json.loads(every.stdout)
    assert set(by_mode) == {"dense", "sparse", "hybrid"}
    for mode, row in by_mode.items():
        assert row["mode"] == mode
        assert row["ndcg@10"] == pytest.approx(NDCG, abs=1e-3)
        assert {"recall@10", "recall@100", "mrr@10", "latency_p50_ms", "latency_p95_ms"} <= set(row)
    assert "| hybrid |" in report.read_text()
    one = run(["eval", "retrieval", str(data), "--mode", "sparse", "--json"], tmp_path / "d")
    assert json.loads(one.stdout)["mode"] == "sparse"
    bad = run(["eval", "retrieval", str(tmp_path), "--json"], tmp_path / "d")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "not a BEIR-format folder" in bad.stderr
    wrong_mode = run(["eval", "retrieval", str(data), "--mode", "fuzzy"], tmp_path / "d")
    assert wrong_mode.returncode == 2
    assert "unknown mode 'fuzzy'" in wrong_mode.stderr
