"""The CLI contract, through real `enclave` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.make_files import BAD_FILES
from tests.processes import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ingest_json_contract_exit_codes_and_docs_commands(kb: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok = run(["ingest", str(kb), "--groups", "staff,hr", "--tag", "policy", "--json"], data)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)  # stdout is exactly one JSON object
    for key in ("added", "updated", "unchanged", "deleted", "chunks_written"):
        assert isinstance(report[key], int)
    assert (report["added"], report["failed"]) == (2, [])
    assert report["chunks_written"] > 0

    BAD_FILES["garbage.docx"](kb / "garbage.docx")
    partial = run(["ingest", str(kb), "--json"], data)
    assert partial.returncode == 1  # documented: finished, some files failed
    report = json.loads(partial.stdout)
    (failure,) = report["failed"]
    assert set(failure) == {"source", "reason"}
    assert failure["source"] == str((kb / "garbage.docx").resolve())
    assert "not a valid DOCX file" in failure["reason"]
    assert (report["updated"], report["unchanged"]) == (0, 2)  # a run without --groups
    # keeps the rule that --groups recorded, and --tag's tags

    listed = run(["docs", "list", "--json"], data)
    assert listed.returncode == 0, listed.stderr
    docs = json.loads(listed.stdout)
    assert {Path(d["source"]).name for d in docs} == {"leave.md", "security.docx"}
    for d in docs:
        assert set(d) >= {"doc_id", "source", "title", "chunks", "groups", "ingested_at"}
        assert d["groups"] == ["staff", "hr"]
        assert d["tags"] == ["policy"]
        assert d["chunks"] > 0

    status = json.loads(run(["status", "--json"], data).stdout)
    assert status["documents"] == 2
    assert status["chunks"] == sum(d["chunks"] for d in docs)
    assert status["engine"] == "qdrant-edge"

    doc = next(d for d in docs if d["source"].endswith("leave.md"))
    assert run(["docs", "delete", doc["doc_id"]], data).returncode == 0
    assert run(["docs", "delete", "--source", str(kb / "security.docx")], data).returncode == 0
    after = json.loads(run(["status", "--json"], data).stdout)
    assert (after["documents"], after["chunks"]) == (0, 0)

    gone = run(["docs", "delete", "nope"], data)
    assert gone.returncode == 2
    assert gone.stderr.startswith("error: no ingested document nope")
    assert "Traceback" not in gone.stderr


def test_search_finds_the_right_document(kb: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(["ingest", str(kb), "--groups", "staff"], data).returncode == 0
    found = run(["search", "How long must passwords be?", "--json", "--top-k", "3"], data)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert Path(hits[0]["source"]).name == "security.docx"
    assert "14 characters" in hits[0]["text"]
    hidden = json.loads(run(["search", "passwords", "--json", "--groups", "hr"], data).stdout)
    assert hidden == []  # documents of other groups are invisible


def test_batch_search_json_and_filters(kb: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(["ingest", str(kb / "leave.md"), "--tag", "hr-policy"], data).returncode == 0
    assert run(["ingest", str(kb / "security.docx")], data).returncode == 0
    queries = tmp_path / "queries.txt"
    queries.write_text("How long must passwords be?\n\nHow many days of annual leave?\n")
    batch = run(["search", "--queries", str(queries), "--json", "--top-k", "2"], data)
    assert batch.returncode == 0, batch.stderr
    results = json.loads(batch.stdout)
    assert [r["query"] for r in results] == [
        "How long must passwords be?",
        "How many days of annual leave?",
    ]
    assert Path(results[0]["hits"][0]["source"]).name == "security.docx"
    assert Path(results[1]["hits"][0]["source"]).name == "leave.md"
    hit = results[0]["hits"][0]
    assert {"doc_id", "source", "title", "page", "score", "text", "relevance"} <= set(hit)
    tagged = run(
        [
            "search",
            "passwords and annual leave",
            "--filter",
            "tag=hr-policy",
            "--json",
            "--top-k",
            "20",
        ],
        data,
    )
    assert {Path(h["source"]).name for h in json.loads(tagged.stdout)} == {"leave.md"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "  "], "query is empty"),
        (["search", "x" * 20_000], "shorten it to"),
        (["search", "leave", "--mode", "semantic"], "unknown search mode 'semantic'"),
        (["search", "leave", "--filter", "tag"], "is not key=value"),
        (["search", "leave", "--filter", "colour=red"], "unknown filter field 'colour'"),
        (["search", "leave", "--filter", "modified_after=soon"], "is not a date"),
        (["search", "--queries", "/no/such/file.txt"], "does not exist"),
        (["search", "leave", "--queries", "/no/such/file.txt"], "one of them"),
        (["search", "leave", "--top-k", "0"], "top_k must be between"),
    ],
)
def test_bad_search_input_is_one_line_and_exit_2(
    kb: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    data = tmp_path / "data"
    assert run(["ingest", str(kb / "leave.md")], data).returncode == 0
    result = run(args, data)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert result.stdout == ""


HOLDERS = {
    "edge": "from qdrant_edge import EdgeShard; h = EdgeShard.load({path!r})",
    "local": "from qdrant_client import QdrantClient; h = QdrantClient(path={path!r})",
}


@pytest.mark.parametrize("engine", sorted(HOLDERS))
def test_a_store_held_by_another_process_gives_one_clear_line(
    kb: Path, tmp_path: Path, engine: str
) -> None:
    data = tmp_path / "data"
    assert run(["ingest", str(kb)], data, ENCLAVE_STORE__ENGINE=engine).returncode == 0
    path = data / "edge" / "enclave" if engine == "edge" else data / "qdrant"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; "
            + HOLDERS[engine].format(path=str(path))
            + "; print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        blocked = run(["ingest", str(kb), "--json"], data, ENCLAVE_STORE__ENGINE=engine)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert blocked.returncode == 2
    lines = blocked.stderr.strip().splitlines()
    assert len(lines) == 1, blocked.stderr
    assert "in use by another Enclave process" in lines[0]
    assert blocked.stdout == ""


def test_bad_settings_and_empty_queries_are_one_line_errors(tmp_path: Path) -> None:
    bad = run(["status"], tmp_path / "data", ENCLAVE_INGEST__CHUNK_TOKENS="10")
    assert bad.returncode == 2
    assert "ENCLAVE_INGEST__CHUNK_TOKENS" in bad.stderr
    assert "Traceback" not in bad.stderr
    empty = run(["search", "   "], tmp_path / "data")
    assert empty.returncode == 2
    assert "query is empty" in empty.stderr
    no_groups = run(["search", "leave", "--groups", " , "], tmp_path / "data")
    assert no_groups.returncode == 2  # never silently widened to admin scope
    assert "--groups is empty" in no_groups.stderr


def test_demo_ingests_the_sample_knowledge_base_and_answers(tmp_path: Path) -> None:
    demo = run(["demo"], tmp_path / "data")
    assert demo.returncode == 0, demo.stderr
    assert "25 days" in demo.stdout
    assert "staff-handbook" in demo.stdout
