"""`enclave keys` and `enclave audit`, through real `enclave` processes."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backends.sql.app import AppDatabase, AuditEntry
from core.settings import Settings
from tests.processes import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_keys_create_list_revoke_json_contract(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run(
        ["keys", "create", "--role", "user", "--groups", "hr, staff", "--name", "bob", "--json"],
        data,
    )
    assert created.returncode == 0, created.stderr
    user = json.loads(created.stdout)  # stdout is exactly one JSON object
    assert set(user) == {"id", "key", "role", "groups"}
    assert (user["role"], user["groups"]) == ("user", ["hr", "staff"])
    assert user["key"].startswith(f"enc_{user['id']}_")

    human = run(["keys", "create", "--role", "admin"], data)
    assert human.returncode == 0, human.stderr
    admin_key = human.stdout.strip()
    assert admin_key.startswith("enc_")
    assert "store" in human.stderr.lower()
    assert "not shown again" in human.stderr

    db = AppDatabase(Settings(data_dir=data).database_url)
    try:
        authenticated = db.authenticate(user["key"])
        assert authenticated is not None
        assert authenticated.id == user["id"]
        admin = db.authenticate(admin_key)
        assert admin is not None
        assert admin.role == "admin"
    finally:
        db.close()

    listed = run(["keys", "list", "--json"], data)
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    assert [k["id"] for k in keys] == [user["id"], admin.id]
    first = keys[0]
    assert set(first) == {"id", "role", "groups", "name", "created_at", "revoked_at"}
    assert (first["role"], first["groups"], first["name"], first["revoked_at"]) == (
        "user",
        ["hr", "staff"],
        "bob",
        None,
    )
    secret = user["key"].split("_", 2)[2]
    for output in (listed.stdout, run(["keys", "list"], data).stdout):
        assert secret not in output
        assert admin_key.split("_", 2)[2] not in output

    revoked = run(["keys", "revoke", user["id"]], data)
    assert revoked.returncode == 0, revoked.stderr
    assert user["id"] in revoked.stderr
    after = {k["id"]: k for k in json.loads(run(["keys", "list", "--json"], data).stdout)}
    assert after[user["id"]]["revoked_at"] is not None
    assert after[admin.id]["revoked_at"] is None
    db = AppDatabase(Settings(data_dir=data).database_url)
    try:
        assert db.authenticate(user["key"]) is None
        assert db.authenticate(admin_key) is not None
    finally:
        db.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "revoke", "nosuchkey"], "no API key nosuchkey"),
        (["keys", "create", "--role", "root"], "--role 'root' is not a role"),
        (["keys", "create", "--role", "user", "--groups", " , "], "--groups is empty"),
        (["keys", "create", "--role", "user", "--groups", "h r"], "invalid group name 'h r'"),
        (["audit", "export", "--since", "last tuesday"], "--since 'last tuesday' is not a date"),
        (["audit", "export", "--since", "2026-13-01"], "--since '2026-13-01' is not a date"),
    ],
)
def test_bad_admin_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(args, tmp_path / "data")
    one_line_error(result, message)
    assert result.stdout == ""


def test_audit_export_writes_jsonl_since_a_date(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = AppDatabase(Settings(data_dir=data).database_url)
    try:
        first = db.record(
            AuditEntry(
                kind="ask",
                key_id="k1",
                question="How many leave days? Mail me: amy@example.com",
                chunk_ids=("c1",),
                model="qwen",
                answer="25 days [1].",
                latency_ms=900.0,
                prompt_tokens=100,
                completion_tokens=10,
            ),
            redact_pii=True,
        )
        second = db.record(
            AuditEntry(
                kind="search",
                key_id="k2",
                question="phishing",
                chunk_ids=("c2", "c3"),
                model="",
                answer="",
                latency_ms=35.0,
            )
        )
        db.add_feedback(first, "k1", "up", "spot on")
    finally:
        db.close()

    exported = run(["audit", "export", "--since", "2020-01-01"], data)
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["question"] == "How many leave days? Mail me: [EMAIL]"
    assert rows[0]["feedback"]["rating"] == "up"
    assert rows[0]["feedback"]["comment"] == "spot on"
    assert rows[1]["feedback"] is None
    assert rows[1]["chunk_ids"] == ["c2", "c3"]
    assert {
        "id",
        "time",
        "kind",
        "key_id",
        "question",
        "chunk_ids",
        "model",
        "answer",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "status",
        "request_id",
        "conversation_id",
        "details",
        "feedback",
    } == set(rows[0])

    out_file = tmp_path / "exports" / "audit.jsonl"
    tomorrow = datetime.fromtimestamp(time.time() + 86_400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    to_file = run(["audit", "export", "--since", "2020-01-01T00:00:00Z", "-o", str(out_file)], data)
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout == ""
    assert out_file.read_text(encoding="utf-8") == exported.stdout
    assert "2 audit entries" in to_file.stderr

    nothing = run(["audit", "export", "--since", tomorrow], data)
    assert nothing.returncode == 0, nothing.stderr
    assert nothing.stdout == ""
