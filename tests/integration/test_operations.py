"""Operating a knowledge base: changing the embedding model (`enclave reindex`), and
backup and restore (`enclave backup` / `enclave restore`) across vector engines and from
SQLite to PostgreSQL. Real `enclave` processes, real embedders, real stores, a real
PostgreSQL server."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from backends.sql.app import AppDatabase, AuditEntry
from core.settings import Settings
from tests.integration.conftest import Postgres
from tests.processes import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "How many days of annual leave do employees get?"


@pytest.fixture(scope="module")
def other_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, real embedding model (none other ships offline): the bundled MiniLM
    followed by a fixed random projection to 128 dimensions, saved as a local folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    from backends.embedders import resolve_model_location
    from core.settings import BUNDLED_EMBEDDER

    torch.manual_seed(7)
    model = SentenceTransformer(resolve_model_location(BUNDLED_EMBEDDER), device="cpu")
    model.append(
        Dense(384, 128, bias=False, activation_function=torch.nn.Identity())  # type: ignore[arg-type]
    )
    folder = tmp_path_factory.mktemp("models") / "minilm-128"
    model.save(str(folder))
    return folder


def _ok(args: list[str], data: Path, **env: str) -> str:
    result = run(args, data, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _status(data: Path, **env: str) -> dict[str, object]:
    return dict(json.loads(_ok(["status", "--json"], data, **env)))


def _top_source(data: Path, **env: str) -> str:
    hits = json.loads(
        _ok(["search", QUESTION, "--json", "--top-k", "1", "--groups", "everyone"], data, **env)
    )
    return str(hits[0]["source"])


def test_changing_the_embedder_is_detected_and_reindex_switches_when_complete(
    kb: Path, tmp_path: Path, other_embedder: Path
) -> None:
    data = tmp_path / "data"
    _ok(["ingest", str(kb), "--groups", "everyone"], data)
    before = _status(data)
    new = {"ENCLAVE_EMBEDDER__MODEL": str(other_embedder)}

    # the swap is detected, with what to do
    refused = run(["search", QUESTION], data, **new)
    assert refused.returncode == 2
    assert "its vectors have 384 dimensions, the embedder gives 128" in refused.stderr
    assert "enclave reindex" in refused.stderr
    assert "Traceback" not in refused.stderr

    out = _ok(["reindex"], data, **new)
    assert f"Reindexed {before['chunks']} chunks" in out
    after = _status(data, **new)
    assert after["collection"] != before["collection"]
    assert after["collection_embedder"] == str(other_embedder)
    assert after["dense_dim"] == 128
    assert (after["chunks"], after["documents"]) == (before["chunks"], before["documents"])
    assert _top_source(data, **new).endswith("leave.md")

    # the registry is still valid: nothing is parsed or embedded again
    rerun = json.loads(_ok(["ingest", str(kb), "--json"], data, **new))
    assert (rerun["unchanged"], rerun["chunks_written"]) == (2, 0)

    again = run(["reindex"], data, **new)
    assert again.returncode == 2
    assert "nothing to reindex" in again.stderr

    # the replaced collection is kept (API processes may still use it) until asked
    old_dir = data / "edge" / str(before["collection"])
    assert old_dir.is_dir()
    assert "Deleted" in _ok(["reindex", "--drop-previous"], data, **new)
    assert not old_dir.exists()
    assert "no replaced collection" in _ok(["reindex", "--drop-previous"], data, **new)
    assert _top_source(data, **new).endswith("leave.md")


def test_backup_restores_into_another_engine_and_refuses_damage_and_overwrites(
    kb: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _ok(["ingest", str(kb), "--groups", "everyone"], data)
    key = json.loads(_ok(["keys", "create", "--role", "user", "--groups", "hr", "--json"], data))
    before = _status(data)
    backup = tmp_path / "backup-1"
    out = _ok(["backup", str(backup)], data)
    assert f"Backed up {before['chunks']} chunks" in out
    assert sorted(p.name for p in backup.iterdir()) == [
        "manifest.json",
        "points.jsonl.gz",
        "sql.jsonl.gz",
    ]
    exists = run(["backup", str(backup)], data)
    assert exists.returncode == 2
    assert "already exists" in exists.stderr

    # into an empty data dir on the other embedded engine
    other = tmp_path / "restored"
    local = {"ENCLAVE_STORE__ENGINE": "local"}
    _ok(["restore", str(backup)], other, **local)
    restored = _status(other, **local)
    assert (restored["chunks"], restored["documents"], restored["collection_embedder"]) == (
        before["chunks"],
        before["documents"],
        before["collection_embedder"],
    )
    assert _top_source(other, **local).endswith("leave.md")
    keys = json.loads(_ok(["keys", "list", "--json"], other, **local))
    assert key["id"] in [k["id"] for k in keys]
    unchanged = json.loads(_ok(["ingest", str(kb), "--json"], other, **local))
    assert (unchanged["unchanged"], unchanged["chunks_written"]) == (2, 0)

    # a filled target is not overwritten unless asked
    refused = run(["restore", str(backup)], other, **local)
    assert refused.returncode == 2
    assert "already hold data" in refused.stderr
    _ok(["restore", str(backup), "--replace"], other, **local)
    assert _status(other, **local)["chunks"] == before["chunks"]

    # a damaged backup is refused before anything is touched
    points = backup / "points.jsonl.gz"
    lines = gzip.decompress(points.read_bytes()).decode().splitlines()
    points.write_bytes(gzip.compress("\n".join(lines[:-1]).encode()))
    damaged = run(["restore", str(backup), "--replace"], other, **local)
    assert damaged.returncode == 2
    assert "damaged" in damaged.stderr
    assert _status(other, **local)["chunks"] == before["chunks"]


def test_a_sqlite_backup_restores_into_postgresql_and_the_database_keeps_working(
    kb: Path, tmp_path: Path, postgres: Postgres
) -> None:
    data = tmp_path / "data"
    _ok(["ingest", str(kb), "--groups", "everyone"], data)
    sqlite = AppDatabase(Settings(data_dir=data).database_url)
    try:
        record, key = sqlite.create_key("user", ["hr"], name="alice")
        for i in range(3):
            sqlite.record(
                AuditEntry("ask", record.id, f"question {i}", ("c1",), "qwen", "answer", 10.0)
            )
            sqlite.append_turn("conv-1", record.id, f"question {i}", "answer")
    finally:
        sqlite.close()
    backup = tmp_path / "backup"
    _ok(["backup", str(backup)], data)

    url = postgres.new_database()
    other = tmp_path / "other"
    _ok(["restore", str(backup)], other, ENCLAVE_DATABASE__URL=url)
    status = _status(other, ENCLAVE_DATABASE__URL=url)
    assert status["documents"] == 2
    pg = AppDatabase(url)
    try:
        assert pg.authenticate(key) is not None
        assert [r["question"] for r in pg.audit_since(0)] == [f"question {i}" for i in range(3)]
        # new rows continue after the restored ones (serial columns moved on)
        pg.record(AuditEntry("ask", record.id, "question 3", ("c1",), "qwen", "answer", 10.0))
        pg.append_turn("conv-1", record.id, "question 3", "answer")
        assert len(list(pg.audit_since(0))) == 4
        assert len(pg.conversation_turns("conv-1", record.id)) == 4
    finally:
        pg.close()
    assert _top_source(other, ENCLAVE_DATABASE__URL=url).endswith("leave.md")
