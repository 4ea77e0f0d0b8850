"""Usage analytics on hand-made audit rows; evaluation records; the ingest path check."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import InputError
from serving.answers import NOT_COVERED
from serving.api.jobs import ingest_target
from serving.api.usage import percentile, usage_report, window_start
from serving.evaluation import latest_eval_record, write_eval_record

NOW = datetime(2024, 5, 10, 15, 30, tzinfo=UTC).timestamp()
DOCS = {"d1": ("Leave policy", "/kb/leave.md"), "d2": ("Security", "/kb/security.md")}


def row(
    day: int,
    hour: int = 12,
    *,
    kind: str = "ask",
    status: str = "ok",
    question: str = "q",
    details: dict[str, Any] | None = None,
    rating: str | None = None,
    latency_ms: float = 1000.0,
    answer: str = "an answer [1]",
    chunk_ids: tuple[str, ...] = ("c1",),
) -> dict[str, Any]:
    """An audit row as ``audit_since`` yields it, on 2024-05-<day>."""
    when = datetime(2024, 5, day, hour, tzinfo=UTC)
    return {
        "id": f"{day}-{hour}-{question}",
        "time": when.isoformat(timespec="milliseconds"),
        "kind": kind,
        "key_id": "k1",
        "question": question,
        "chunk_ids": list(chunk_ids),
        "model": "m",
        "answer": answer,
        "latency_ms": latency_ms,
        "status": status,
        "conversation_id": None,
        "details": details,
        "feedback": None if rating is None else {"rating": rating, "comment": "", "time": ""},
    }


def details(
    embed: float, generate: float, cited: tuple[str, ...] = (), abstained: bool = False
) -> dict[str, Any]:
    return {
        "timings": {"embed": embed, "generate": generate},
        "cited_doc_ids": list(cited),
        "abstained": abstained,
    }


def report(rows: list[dict[str, Any]], days: int = 3) -> dict[str, Any]:
    return usage_report(rows, days, NOW, DOCS.get)


def test_window_is_whole_utc_days_ending_today() -> None:
    assert window_start(1, NOW) == datetime(2024, 5, 10, tzinfo=UTC).timestamp()
    assert window_start(3, NOW) == datetime(2024, 5, 8, tzinfo=UTC).timestamp()


def test_empty_log_gives_zero_days_and_no_ratio() -> None:
    body = report([], days=3)
    assert body["since"] == "2024-05-08T00:00:00+00:00"
    assert body["questions_per_day"] == [
        {"date": d, "questions": 0, "answered": 0, "abstained": 0, "failed": 0}
        for d in ("2024-05-08", "2024-05-09", "2024-05-10")
    ]
    assert body["latency_ms"] == {}
    assert body["feedback"] == {"up": 0, "down": 0, "ratio": None}
    assert (body["top_documents"], body["unanswered"]) == ([], [])


def test_counts_latency_feedback_documents_and_unanswered() -> None:
    rows = [
        row(7, question="before the window", details=details(1, 1, ("d1",))),
        row(8, 9, question="a1", details=details(10, 100, ("d1", "d2", "d1")), rating="up"),
        row(8, 10, kind="search", question="searches do not count"),
        row(
            9,
            8,
            question="a2",
            details=details(20, 300, ("d1", "gone")),
            rating="down",
            latency_ms=3000,
        ),
        row(
            9,
            9,
            question="abstained",
            details=details(30, 0, abstained=True),
            latency_ms=50,
            rating="up",
        ),
        row(9, 10, kind="chat", question="chat failed", status="error: llm_unavailable"),
        row(10, 1, question="cancelled", status="cancelled", details=details(5, 5)),
        # an old row without details: abstention is recognised by the fixed reply
        row(10, 2, question="old abstained", answer=NOT_COVERED, chunk_ids=(), latency_ms=40),
        row(10, 3, question="old answered", latency_ms=2000),
    ]
    body = report(rows)
    days = {d["date"]: d for d in body["questions_per_day"]}
    assert days["2024-05-08"] == {
        "date": "2024-05-08",
        "questions": 1,
        "answered": 1,
        "abstained": 0,
        "failed": 0,
    }
    assert days["2024-05-09"] | {"date": ""} == {
        "date": "",
        "questions": 3,
        "answered": 1,
        "abstained": 1,
        "failed": 1,
    }
    assert days["2024-05-10"] | {"date": ""} == {
        "date": "",
        "questions": 3,
        "answered": 1,
        "abstained": 1,
        "failed": 1,
    }
    # failed answers do not count towards latency; stages only from rows with details
    latency = body["latency_ms"]
    assert set(latency) == {"embed", "generate", "total"}
    assert latency["embed"] == {"p50": 20.0, "p95": 29.0, "count": 3}
    assert latency["generate"]["count"] == 3
    assert latency["total"]["count"] == 5
    assert latency["total"]["p50"] == 1000.0
    assert body["feedback"] == {"up": 2, "down": 1, "ratio": pytest.approx(2 / 3, abs=1e-4)}
    # d1 is cited by two answers (twice in one of them: counted once)
    assert body["top_documents"] == [
        {"doc_id": "d1", "title": "Leave policy", "source": "/kb/leave.md", "citations": 2},
        {"doc_id": "d2", "title": "Security", "source": "/kb/security.md", "citations": 1},
        {"doc_id": "gone", "title": "(deleted)", "source": "(deleted)", "citations": 1},
    ]
    assert [(u["question"], u["reason"]) for u in body["unanswered"]] == [
        ("old abstained", "abstained"),
        ("cancelled", "failed"),
        ("chat failed", "failed"),
        ("abstained", "abstained"),
        ("a2", "thumbs down"),
    ]
    assert body["unanswered"][0]["time"].startswith("2024-05-10T02:00")


def test_lists_are_capped() -> None:
    rows = [
        row(10, 0, question=f"q{i}", details=details(1, 1, (f"doc{i:02}",), abstained=False))
        for i in range(15)
    ] + [row(10, 1, question=f"failed {i}", status="error: x") for i in range(25)]
    body = report(rows, days=1)
    assert len(body["top_documents"]) == 10
    assert body["top_documents"][0]["doc_id"] == "doc00"  # ties: by id
    assert len(body["unanswered"]) == 20
    assert body["unanswered"][0]["question"] == "failed 24"  # newest first
    with pytest.raises(ValueError, match="days"):
        report([], days=0)


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20, 30], 95) == pytest.approx(29.0)
    assert percentile([7], 95) == 7


# -- evaluation records ----------------------------------------------------------------------
def test_eval_records_latest_wins_and_unreadable_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert latest_eval_record(tmp_path, "retrieval") is None
    first = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    path = write_eval_record(tmp_path, "retrieval", "scifact", {"hybrid": {"ndcg@10": 0.7}}, first)
    assert path == tmp_path / "eval" / "retrieval-20240501T090000.json"
    write_eval_record(
        tmp_path, "retrieval", "scifact", {"hybrid": {"ndcg@10": 0.72}}, first + timedelta(hours=1)
    )
    write_eval_record(tmp_path, "answers", "covidqa", {"hybrid": {"mrr@10": 0.5}}, first)
    assert not [p for p in (tmp_path / "eval").iterdir() if p.name.endswith(".part")]
    latest = latest_eval_record(tmp_path, "retrieval")
    assert latest == {
        "kind": "retrieval",
        "dataset": "scifact",
        "created_at": "2024-05-01T10:00:00+00:00",
        "results": {"hybrid": {"ndcg@10": 0.72}},
    }
    assert latest_eval_record(tmp_path, "answers")["dataset"] == "covidqa"  # type: ignore[index]
    (tmp_path / "eval" / "retrieval-20990101T000000.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="serving.evaluation"):
        assert latest_eval_record(tmp_path, "retrieval") == latest
    assert "retrieval-20990101T000000.json" in caplog.text
    assert json.loads(path.read_text())["results"] == {"hybrid": {"ndcg@10": 0.7}}


# -- the server paths POST /v1/ingest may read ---------------------------------------------------------
def test_ingest_target_stays_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "hr").mkdir(parents=True)
    (root / "hr" / "a.md").write_text("# A\n")
    secret = tmp_path / "secret.md"
    secret.write_text("no")
    (root / "escape.md").symlink_to(secret)
    (root / "up").symlink_to(tmp_path)

    assert ingest_target([root], str(root / "hr")) == (root / "hr").resolve()
    assert ingest_target([root], str(root / "hr" / "a.md")) == (root / "hr" / "a.md").resolve()
    assert ingest_target([root], str(root / "hr" / ".." / "hr")) == (root / "hr").resolve()
    with pytest.raises(InputError, match="ENCLAVE_API__INGEST_ROOTS") as off:
        ingest_target([], str(root))
    assert "off" in str(off.value)
    for outside in (secret, root / "escape.md", root / "up", root / ".." / "secret.md"):
        with pytest.raises(InputError, match="outside the folders") as err:
            ingest_target([root], str(outside))
        assert str(outside) in str(err.value)
        assert str(root.resolve()) in str(err.value)
    with pytest.raises(InputError, match="does not exist") as missing:
        ingest_target([root], str(root / "nope"))
    assert str(root / "nope") in str(missing.value)
