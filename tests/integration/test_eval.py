"""The evaluation harness on tiny hand-made data whose metrics can be checked by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.errors import InputError
from core.settings import LLMSettings, RetrievalSettings, Settings
from serving.evaluation import (
    contains_answer,
    evaluate_answer_recall,
    evaluate_generation,
    evaluate_retrieval,
    exact_match,
    generation_questions,
    load_beir,
    load_covidqa,
    says_not_covered,
    squad_normalise,
    token_f1,
)
from tests.data.beir import CORPUS, NDCG, RECALL, write_beir
from tests.processes import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    (record_file,) = (tmp_path / "d" / "eval").glob("retrieval-*.json")  # for GET /v1/quality
    record = json.loads(record_file.read_text())
    assert (record["kind"], record["dataset"], record["results"]) == ("retrieval", "tiny", by_mode)
    assert record["created_at"].endswith("+00:00")
    one = run(["eval", "retrieval", str(data), "--mode", "sparse", "--json"], tmp_path / "d")
    assert json.loads(one.stdout)["mode"] == "sparse"
    bad = run(["eval", "retrieval", str(tmp_path), "--json"], tmp_path / "d")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "not a BEIR-format folder" in bad.stderr
    wrong_mode = run(["eval", "retrieval", str(data), "--mode", "fuzzy"], tmp_path / "d")
    assert wrong_mode.returncode == 2
    assert "unknown mode 'fuzzy'" in wrong_mode.stderr


def test_eval_answers_cli_leaves_a_record(tmp_path: Path) -> None:
    path = tmp_path / "tiny_qa.json"
    path.write_text(json.dumps(SQUAD))
    done = run(["eval", "answers", str(path), "--mode", "sparse", "--json"], tmp_path / "d")
    assert done.returncode == 0, done.stderr
    (record_file,) = (tmp_path / "d" / "eval").glob("answers-*.json")
    record = json.loads(record_file.read_text())
    assert (record["kind"], record["dataset"]) == ("answers", "tiny_qa")
    assert record["results"] == json.loads(done.stdout)


# The answer-quality fixture: SQUAD plus a third article. Holding out every 20th
# article leaves out the first ("Incubation"), so its two questions are the abstention
# questions and the other two are answerable.
SQUAD_GEN = {
    "data": [
        *SQUAD["data"],
        {
            "title": "Protection",
            "document_id": 3,
            "paragraphs": [
                {
                    "context": "Health workers should wear N95 respirators during "
                    "aerosol-generating procedures, and surgical masks otherwise.",
                    "qas": [
                        {
                            "question": "What should health workers wear during "
                            "aerosol-generating procedures?",
                            "answers": [{"text": "N95 respirators", "answer_start": 27}],
                        }
                    ],
                }
            ],
        },
    ]
}


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1"),
    [
        # Normalisation: case, punctuation and articles do not count.
        ("The Eiffel Tower.", "eiffel tower", 1.0, 1.0),
        # 2 common tokens: precision 2/2, recall 2/4 -> F1 2/3.
        ("the Eiffel tower", "Eiffel Tower in Paris", 0.0, 2 / 3),
        # precision 2/2, recall 2/3 -> F1 0.8.
        ("Eiffel Tower", "the Eiffel Tower, Paris", 0.0, 0.8),
        # Repeated tokens count once per occurrence in both (Counter intersection):
        # common {five: 1, days: 1} = 2, precision 2/4, recall 2/2 -> F1 2/3.
        ("five days five days", "five days", 0.0, 2 / 3),
        ("Paris", "London", 0.0, 0.0),
        ("", "London", 0.0, 0.0),
    ],
)
def test_squad_exact_match_and_token_f1(prediction: str, gold: str, em: float, f1: float) -> None:
    assert exact_match(prediction, gold) == em
    assert token_f1(prediction, gold) == pytest.approx(f1)


def test_squad_normalisation_containment_and_not_covered_phrases() -> None:
    assert squad_normalise("  The COVID-19 virus,\tan  RNA virus! ") == "covid19 virus rna virus"
    assert contains_answer("The median is five days [1].", "five days")
    assert contains_answer("Mother-to-child transmission (MTCT).", "mother to child") is False
    assert not contains_answer("twenty-five days", "five days")  # whole words only
    assert not contains_answer("anything", "the")  # a gold that normalises to nothing
    assert says_not_covered("The documents do not  cover this question [1].")
    assert says_not_covered("The passages does not contain the answer.")
    assert not says_not_covered("It spreads through respiratory droplets [1].")


def test_generation_questions_hold_out_every_nth_article(tmp_path: Path) -> None:
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(SQUAD_GEN))
    data = load_covidqa(path)
    asked = generation_questions(data, generate=10, abstain=10)
    assert [(a.article, a.answerable) for a in asked] == [
        ("2", True),
        ("3", True),
        ("1", False),
        ("1", False),
    ]
    one_each = generation_questions(data, generate=1, abstain=1)
    assert [a.question for a in one_each] == [
        "How does the virus spread?",
        "What is the median incubation period?",
    ]
    # 10 articles of 2 questions, every 4th held out: articles 0, 4, 8 (6 questions);
    # 3 of them spread evenly: the 1st, 3rd and 5th.
    many = {
        "data": [
            {
                "document_id": f"a{i}",
                "paragraphs": [
                    {
                        "context": f"Article {i}.",
                        "qas": [
                            {"question": f"q{i}-{j}", "answers": [{"text": f"{i}"}]}
                            for j in range(2)
                        ],
                    }
                ],
            }
            for i in range(10)
        ]
    }
    path.write_text(json.dumps(many))
    data = load_covidqa(path)
    held = [a.question for a in generation_questions(data, 0, 3, every=4)]
    assert held == ["q0-0", "q4-0", "q8-0"]
    first = [a.question for a in generation_questions(data, 3, 0, every=4)]
    assert first == ["q1-0", "q1-1", "q2-0"]
    with pytest.raises(InputError, match="--generate"):
        generation_questions(data, -1, 0)


def test_generated_answers_are_scored_and_held_out_articles_are_not_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tiny_qa.json"
    path.write_text(json.dumps(SQUAD_GEN))
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, llm=LLMSettings(embedded_model="smollm2-135m"))
    result = evaluate_generation(settings, load_covidqa(path), generate=5, abstain=2)
    assert (result.documents, result.held_out, result.mode) == (2, 1, "hybrid")
    assert result.model == "smollm2-135m-instruct"
    answerable = [a for a in result.answers if a.answerable]
    held_out = [a for a in result.answers if not a.answerable]
    assert [a.gold for a in answerable] == ["respiratory droplets", "N95 respirators"]
    assert [a.gold for a in held_out] == ["five days", "fever and a dry cough"]
    for a in result.answers:
        # Nothing of the held-out article ("incubation", "fever") reached the model.
        assert all("incubation" not in p.lower() and "fever" not in p.lower() for p in a.passages)
        assert re.search(r"\[\d", a.answer) is None  # citation markers removed
        assert a.f1 == pytest.approx(token_f1(a.answer, a.gold))
        if a.abstained:
            assert (a.passages, a.first_token_ms, a.not_covered) == ((), None, False)
        else:
            assert a.answer
            assert a.first_token_ms is not None
            assert 0 < a.first_token_ms <= a.total_ms
            assert a.completion_tokens > 0
        assert 0 <= a.claims_supported <= a.claims
        assert not a.span_support or a.claims_supported  # a span only for a supported claim
    for a in answerable:  # retrieval gave the model the passage with the gold answer
        assert a.abstained or any(contains_answer(p, a.gold) for p in a.passages)
    metrics = result.metrics()
    assert (metrics["answerable_questions"], metrics["held_out_questions"]) == (2, 2)
    for name, value in metrics.items():
        if not name.endswith(("_questions", "_ms", "_mean")):
            assert 0 <= value <= 1, name
    assert metrics["exact_match"] <= metrics["f1"]
    assert metrics["citation_support"] <= metrics["cited"]
    assert metrics["completion_tokens_mean"] > 0
    assert metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]

    # The CLI: recall, then generation, in one JSON object and one report (index reused).
    report = tmp_path / "report.md"
    args = ["eval", "answers", str(path), "--mode", "hybrid", "--generate", "1", "--abstain", "1"]
    cli = run(
        [*args, "--json", "--report", str(report)],
        data_dir,
        ENCLAVE_LLM__EMBEDDED_MODEL="smollm2-135m",
    )
    assert cli.returncode == 0, cli.stderr
    rows = json.loads(cli.stdout)
    assert set(rows) == {"hybrid", "generation"}
    generation = rows["generation"]
    assert generation["model"] == "smollm2-135m-instruct"
    assert (generation["answerable_questions"], generation["held_out_questions"]) == (1, 1)
    assert [a["answerable"] for a in generation["answers"]] == [True, False]
    assert {"question", "gold", "answer", "f1", "exact_match", "supported"} <= set(
        generation["answers"][0]
    )
    text = report.read_text()
    assert "### Answer recall" in text
    assert "### Answer quality: tiny_qa (smollm2-135m-instruct, hybrid search)" in text
    assert "| 1 answerable questions | Share |" in text
    bad = run(["eval", "answers", str(path), "--generate", "-1"], data_dir)
    assert bad.returncode == 2
    assert "--generate" in bad.stderr
