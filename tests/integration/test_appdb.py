"""The application database on a real SQLite file and a real PostgreSQL server: keys,
audit, feedback, conversations, jobs."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from backends.sql.app import AppDatabase, AuditEntry
from backends.sql.registry import Registry
from core.errors import InputError, NotFoundError, StoreError
from core.settings import Settings
from core.types import Document, Principal

pytestmark = [pytest.mark.integration]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "enclave.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, db_path: Path) -> Iterator[AppDatabase]:
    """The database on each engine (tests that read the SQLite file use ``sqlite_db``)."""
    if request.param == "sqlite":
        url = f"sqlite:///{db_path}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    database = AppDatabase(url)
    yield database
    database.close()


@pytest.fixture
def sqlite_db(db_path: Path) -> Iterator[AppDatabase]:
    database = AppDatabase(f"sqlite:///{db_path}")
    yield database
    database.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The database's clock, moved by hand: ``clock[0] += 1`` is one second later."""
    import backends.sql.app

    now = [1_700_000_000.0]
    monkeypatch.setattr(backends.sql.app, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def entry(key_id: str, question: str = "How many leave days?", **kw: object) -> AuditEntry:
    values: dict[str, object] = {
        "kind": "ask",
        "key_id": key_id,
        "question": question,
        "chunk_ids": ("c1", "c2"),
        "model": "qwen",
        "answer": "25 days [1].",
        "latency_ms": 812.5,
        **kw,
    }
    return AuditEntry(**values)  # type: ignore[arg-type]


def test_shares_the_registry_database_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    registry = Registry(settings.database_url)
    registry.put(Document("d1", "/kb/a.md", "A", "h", 1.0, "text/markdown", 10, ("everyone",)), 3)
    db = AppDatabase(settings.database_url)
    try:
        db.create_key("user", ["everyone"])
        assert [r.document.doc_id for r in registry.all()] == ["d1"]
    finally:
        db.close()
        registry.close()
    with closing(sqlite3.connect(tmp_path / "data" / "enclave.db")) as conn, conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        mode = conn.execute("pragma journal_mode").fetchone()[0]
    assert {"documents", "api_keys", "audit", "feedback", "conversations", "jobs"} <= tables
    assert mode == "wal"


def test_create_and_authenticate_keys(db: AppDatabase) -> None:
    record, key = db.create_key("user", ["hr", "staff", "hr"], name="alice's laptop")
    assert key.startswith(f"enc_{record.id}_")
    assert re.fullmatch(r"[0-9a-f]{12}", record.id)
    assert record.groups == ("hr", "staff")
    assert record.role == "user"
    assert record.revoked_at is None

    found = db.authenticate(key)
    assert found == record
    assert found is not None
    assert found.principal == Principal(
        name=f"key {record.id} (alice's laptop)", groups=("hr", "staff"), admin=False
    )
    admin, admin_key = db.create_key("admin")
    assert admin.principal == Principal(name=f"key {admin.id}", groups=(), admin=True)
    assert db.authenticate(admin_key) == admin
    assert [k.id for k in db.list_keys()] == [record.id, admin.id]


def test_wrong_malformed_and_revoked_keys_do_not_authenticate(db: AppDatabase) -> None:
    record, key = db.create_key("user", ["staff"])
    other, other_key = db.create_key("user", ["staff"])
    secret = key.split("_", 2)[2]
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert db.authenticate(wrong_secret) is None
    assert db.authenticate(f"enc_{record.id}_{other_key.split('_', 2)[2]}") is None
    assert db.authenticate(f"enc_{'0' * 12}_{secret}") is None  # unknown id
    for malformed in [
        "",
        "enc_",
        secret,
        f"enc_{record.id}",
        f"key_{record.id}_{secret}",
        "x" * 500,
    ]:
        assert db.authenticate(malformed) is None

    db.revoke_key(record.id)
    assert db.authenticate(key) is None
    assert db.authenticate(other_key) == other  # only that key
    (listed,) = [k for k in db.list_keys() if k.id == record.id]
    assert listed.revoked_at is not None
    assert listed.revoked_at <= time.time()
    db.revoke_key(record.id)  # again: no error, still revoked
    with pytest.raises(NotFoundError, match="no API key nope"):
        db.revoke_key("nope")


def test_only_the_hash_of_the_secret_is_stored(sqlite_db: AppDatabase, db_path: Path) -> None:
    import hashlib

    db = sqlite_db
    record, key = db.create_key("admin", name="ops")
    secret = key.split("_", 2)[2]
    db.close()
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("pragma wal_checkpoint(TRUNCATE)")
        row = conn.execute("select * from api_keys where id = ?", (record.id,)).fetchone()
    assert hashlib.sha256(secret.encode()).hexdigest() in row
    assert key not in row
    assert secret not in row
    for file in db_path.parent.iterdir():  # the database, its WAL and shared memory
        data = file.read_bytes()
        assert secret.encode() not in data, file
        assert key.encode() not in data, file


@pytest.mark.parametrize(
    ("role", "groups", "message"),
    [
        ("owner", (), "unknown role 'owner'"),
        ("user", ["hr", "bad group"], "invalid group name 'bad group'"),
        ("user", ["hr,staff"], "invalid group name 'hr,staff'"),
        ("user", [""], "invalid group name ''"),
        ("user", "hr", "list of group names"),
    ],
)
def test_bad_key_input_is_named(db: AppDatabase, role: str, groups: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        db.create_key(role, groups)  # type: ignore[arg-type]
    assert db.list_keys() == []


def test_audit_and_feedback(db: AppDatabase) -> None:
    alice, _ = db.create_key("user", ["staff"])
    bob, _ = db.create_key("user", ["staff"])
    before = time.time()
    answer_id = db.record(
        entry(alice.id, prompt_tokens=120, completion_tokens=30, request_id="req-1")
    )
    after = time.time()
    assert re.fullmatch(r"[0-9a-f]{32}", answer_id)

    (row,) = list(db.audit_since(0))
    assert row["id"] == answer_id
    assert row["kind"] == "ask"
    assert row["key_id"] == alice.id
    assert row["chunk_ids"] == ["c1", "c2"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (120, 30)
    assert (row["status"], row["request_id"], row["conversation_id"]) == ("ok", "req-1", None)
    assert row["latency_ms"] == 812.5
    assert row["feedback"] is None
    assert before - 0.001 <= datetime.fromisoformat(row["time"]).timestamp() <= after
    assert row["time"].endswith("+00:00")

    with pytest.raises(NotFoundError) as other_key:
        db.add_feedback(answer_id, bob.id, "up")
    with pytest.raises(NotFoundError) as unknown:
        db.add_feedback("0" * 32, bob.id, "up")
    # the same message shape either way: it does not reveal that the answer exists
    assert str(other_key.value) == str(unknown.value).replace("0" * 32, answer_id)

    db.add_feedback(answer_id, alice.id, "down", "wrong number of days")
    assert next(iter(db.audit_since(0)))["feedback"]["rating"] == "down"
    db.add_feedback(answer_id, alice.id, "up", "fixed after re-ingest")
    feedback = next(iter(db.audit_since(0)))["feedback"]
    assert (feedback["rating"], feedback["comment"]) == ("up", "fixed after re-ingest")
    assert datetime.fromisoformat(feedback["time"]).tzinfo is not None
    assert len(list(db.audit_since(0))) == 1  # replacing feedback adds no rows
    with pytest.raises(InputError, match="unknown rating"):
        db.add_feedback(answer_id, alice.id, "meh")  # type: ignore[arg-type]


def test_redaction_on_record_and_feedback(sqlite_db: AppDatabase, db_path: Path) -> None:
    db = sqlite_db
    question = "My IBAN is DE89 3704 0044 0532 0130 00, mail me at eve@example.com"
    answer = "We will call +44 20 7946 0958."
    plain_id = db.record(entry("k1", question, answer=answer))
    redacted_id = db.record(entry("k1", question, answer=answer), redact_pii=True)
    db.add_feedback(redacted_id, "k1", "down", "call me on 020 7946 0958", redact_pii=True)
    rows = {r["id"]: r for r in db.audit_since(0)}
    assert rows[plain_id]["question"] == question
    assert rows[plain_id]["answer"] == answer
    assert rows[redacted_id]["question"] == "My IBAN is [IBAN], mail me at [EMAIL]"
    assert rows[redacted_id]["answer"] == "We will call [PHONE]."
    assert rows[redacted_id]["feedback"]["comment"] == "call me on [PHONE]"
    with closing(sqlite3.connect(db_path)) as conn, conn:
        stored = conn.execute("select question from audit where id = ?", (redacted_id,)).fetchone()
    assert "eve@example.com" not in stored[0]


def test_audit_since_is_oldest_first_and_filters_by_time(
    db: AppDatabase, clock: list[float]
) -> None:
    ids = []
    for i in range(4):
        ids.append(db.record(entry("k1", f"question {i}", kind="search" if i % 2 else "ask")))
        clock[0] += 0.02
    rows = list(db.audit_since(0))
    assert [r["id"] for r in rows] == ids
    assert [r["question"] for r in rows] == [f"question {i}" for i in range(4)]
    assert [r["kind"] for r in rows] == ["ask", "search", "ask", "search"]
    cut = datetime.fromisoformat(rows[2]["time"]).timestamp() - 0.001
    assert [r["id"] for r in db.audit_since(cut)] == ids[2:]
    assert list(db.audit_since(clock[0] + 60)) == []


def test_audit_since_pages_through_many_rows(
    db: AppDatabase, monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    import backends.sql.app

    monkeypatch.setattr(backends.sql.app, "_PAGE", 3)
    ids = [db.record(entry("k1", f"q{i}")) for i in range(5)]
    clock[0] += 1
    ids += [db.record(entry("k1", f"q{i}")) for i in range(5, 10)]  # pages split equal times
    assert [r["id"] for r in db.audit_since(0)] == ids


def test_conversations_keep_order_limit_and_owner(db: AppDatabase) -> None:
    assert db.conversation("conv-1", "alice") == []
    for i in range(8):
        db.append_turn("conv-1", "alice", f"q{i}", f"a{i}")
    assert db.conversation("conv-1", "alice") == [(f"q{i}", f"a{i}") for i in range(2, 8)]
    assert db.conversation("conv-1", "alice", max_turns=2) == [("q6", "a6"), ("q7", "a7")]
    assert db.conversation("conv-1", "alice", max_turns=0) == []
    assert len(db.conversation("conv-1", "alice", max_turns=50)) == 8

    with pytest.raises(NotFoundError, match="no conversation conv-1"):
        db.conversation("conv-1", "bob")
    with pytest.raises(NotFoundError, match="no conversation conv-1"):
        db.append_turn("conv-1", "bob", "sneaky", "no")
    assert len(db.conversation("conv-1", "alice", max_turns=50)) == 8  # nothing appended

    db.append_turn("conv-2", "bob", "hello", "hi")
    assert db.conversation("conv-2", "bob") == [("hello", "hi")]
    with pytest.raises(InputError, match="conversation id"):
        db.conversation("x" * 65, "bob")


def test_jobs_lifecycle(db: AppDatabase, clock: list[float]) -> None:
    first = db.create_job("k1", total_files=3)
    clock[0] += 0.01
    second = db.create_job("k2", total_files=1)
    job = db.get_job(first)
    assert (job.status, job.total_files, job.done_files, job.chunks) == ("queued", 3, 0, 0)
    assert (job.key_id, job.results, job.error) == ("k1", [], None)
    assert job.created_at == job.updated_at

    clock[0] += 0.01
    db.update_job(first, status="running", done_files=1, chunks=12)
    results = [
        {"source": "/kb/a.md", "status": "added"},
        {"source": "/kb/b.docx", "status": "failed", "reason": "not a valid DOCX file"},
    ]
    db.update_job(first, status="failed", done_files=3, results=results, error="1 file failed")
    job = db.get_job(first)
    assert (job.status, job.done_files, job.chunks) == ("failed", 3, 12)
    assert job.results == results
    assert job.error == "1 file failed"
    assert job.updated_at > job.created_at

    assert [j.id for j in db.list_jobs()] == [second, first]
    assert [j.id for j in db.list_jobs(limit=1)] == [second]
    with pytest.raises(NotFoundError, match="no job nope"):
        db.get_job("nope")
    with pytest.raises(NotFoundError, match="no job nope"):
        db.update_job("nope", status="done")
    with pytest.raises(InputError, match="unknown job status 'finished'"):
        db.update_job(first, status="finished")


def test_database_failures_are_store_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="ENCLAVE_DATABASE__URL"):
        AppDatabase(f"sqlite:///{blocker / 'sub' / 'enclave.db'}")
    with pytest.raises(StoreError, match="ENCLAVE_DATABASE__URL"):
        AppDatabase("nosuchdialect://x")

    db_file = tmp_path / "data" / "enclave.db"
    db = AppDatabase(f"sqlite:///{db_file}")
    try:
        with closing(sqlite3.connect(db_file)) as conn, conn:
            conn.execute("drop table audit")
        with pytest.raises(StoreError, match="writing the audit log") as failed:
            db.record(entry("k1", "secret question"))
        assert "secret question" not in str(failed.value)  # no SQL parameters in messages
    finally:
        db.close()


def test_audit_details_are_recorded_for_answers_only(db: AppDatabase) -> None:
    answer_id = db.record(
        entry(
            "k1",
            timings_ms={"embed": 12.345, "generate": 800.0},
            cited_doc_ids=("d1", "d2"),
            abstained=False,
        )
    )
    search_id = db.record(entry("k1", kind="search"))
    failed_id = db.record(entry("k1", status="cancelled", timings_ms={}, abstained=False))
    rows = {r["id"]: r for r in db.audit_since(0)}
    assert rows[answer_id]["details"] == {
        "timings": {"embed": 12.3, "generate": 800.0},
        "cited_doc_ids": ["d1", "d2"],
        "abstained": False,
    }
    assert rows[search_id]["details"] is None
    assert rows[failed_id]["details"] == {"timings": {}, "cited_doc_ids": [], "abstained": False}


def test_conversation_list_turns_and_delete(db: AppDatabase, clock: list[float]) -> None:
    long_question = "Why " + "really " * 30 + "?"
    citations = [
        {"n": 1, "doc_id": "d1", "source": "/kb/a.md", "title": "A", "page": None, "quote": "q"}
    ]
    db.append_turn("conv-1", "alice", long_question, "a1", answer_id="ans-1", citations=citations)
    clock[0] += 1
    db.append_turn("conv-2", "alice", "  Second\nconversation ", "b1")
    clock[0] += 1
    db.append_turn("conv-1", "alice", "follow-up", "a2", answer_id="ans-2", citations=[])
    db.append_turn("conv-3", "bob", "bob's", "c1")

    listed = db.list_conversations("alice")
    assert [c["conversation_id"] for c in listed] == ["conv-1", "conv-2"]  # newest first
    assert [c["turns"] for c in listed] == [2, 1]
    assert len(listed[0]["title"]) == 80
    assert listed[0]["title"].endswith("…")
    assert long_question.startswith(listed[0]["title"][:-1])
    assert listed[1]["title"] == "Second conversation"
    assert datetime.fromisoformat(listed[0]["updated_at"]).timestamp() == clock[0]
    assert [c["conversation_id"] for c in db.list_conversations("alice", limit=1)] == ["conv-1"]
    assert [c["conversation_id"] for c in db.list_conversations("bob")] == ["conv-3"]

    turns = db.conversation_turns("conv-1", "alice")
    assert [(t["question"], t["answer"], t["answer_id"]) for t in turns] == [
        (long_question, "a1", "ans-1"),
        ("follow-up", "a2", "ans-2"),
    ]
    assert turns[0]["citations"] == citations
    assert turns[1]["citations"] == []
    assert db.conversation_turns("conv-2", "alice")[0]["citations"] == []  # none stored
    assert datetime.fromisoformat(turns[0]["time"]).tzinfo is not None

    # another key's conversation is as unknown as a missing one, and stays untouched
    for call in (db.conversation_turns, db.delete_conversation):
        with pytest.raises(NotFoundError) as other:
            call("conv-1", "bob")
        with pytest.raises(NotFoundError) as unknown:
            call("conv-9", "bob")
        assert str(other.value) == str(unknown.value).replace("conv-9", "conv-1")
    db.delete_conversation("conv-1", "alice")
    assert [c["conversation_id"] for c in db.list_conversations("alice")] == ["conv-2"]
    with pytest.raises(NotFoundError):
        db.conversation_turns("conv-1", "alice")
    assert db.conversation("conv-1", "alice") == []  # the id may be started afresh


def test_job_total_files_can_be_updated(db: AppDatabase) -> None:
    job_id = db.create_job("k1", total_files=0)
    db.update_job(job_id, status="running", total_files=7)
    assert db.get_job(job_id).total_files == 7


def test_a_database_with_the_old_schema_gets_the_new_columns(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executescript(
            """
            CREATE TABLE audit (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id VARCHAR(32) NOT NULL UNIQUE,
                time FLOAT NOT NULL, kind VARCHAR(16) NOT NULL, key_id VARCHAR(64) NOT NULL,
                question TEXT NOT NULL, chunk_ids TEXT NOT NULL, model TEXT NOT NULL,
                answer TEXT NOT NULL, latency_ms FLOAT NOT NULL, prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL, status VARCHAR(32) NOT NULL,
                request_id VARCHAR(128) NOT NULL, conversation_id VARCHAR(64)
            );
            CREATE TABLE conversations (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id VARCHAR(64) NOT NULL,
                key_id VARCHAR(64) NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
                time FLOAT NOT NULL
            );
            INSERT INTO audit (id, time, kind, key_id, question, chunk_ids, model, answer,
                latency_ms, prompt_tokens, completion_tokens, status, request_id)
                VALUES ('old-answer', 1700000000, 'ask', 'k1', 'old question', '[]', 'm',
                'old answer', 5, 0, 0, 'ok', '');
            INSERT INTO conversations (conversation_id, key_id, question, answer, time)
                VALUES ('conv-old', 'k1', 'old question', 'old answer', 1700000000);
            """
        )
    for _ in range(2):  # opening it again finds nothing to add
        db = AppDatabase(f"sqlite:///{db_path}")
        try:
            old = next(iter(db.audit_since(0)))
            assert (old["id"], old["details"]) == ("old-answer", None)
            assert db.conversation_turns("conv-old", "k1")[0] == {
                "question": "old question",
                "answer": "old answer",
                "answer_id": None,
                "citations": [],
                "time": old["time"],
            }
            db.append_turn("conv-old", "k1", "new", "new answer", answer_id="a", citations=[])
            db.record(entry("k1", timings_ms={"embed": 1.0}, abstained=True))
        finally:
            db.close()
    db = AppDatabase(f"sqlite:///{db_path}")
    try:
        assert [r["details"] for r in db.audit_since(0)][1:] == [
            {"timings": {"embed": 1.0}, "cited_doc_ids": [], "abstained": True}
        ] * 2
        assert [t["answer_id"] for t in db.conversation_turns("conv-old", "k1")] == [None, "a", "a"]
    finally:
        db.close()
    with closing(sqlite3.connect(db_path)) as conn, conn:
        audit_columns = {r[1] for r in conn.execute("pragma table_info(audit)")}
        conversation_columns = {r[1] for r in conn.execute("pragma table_info(conversations)")}
    assert "details" in audit_columns
    assert {"answer_id", "citations"} <= conversation_columns


def test_a_missing_required_column_is_a_clear_store_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("CREATE TABLE feedback (answer_id VARCHAR(32) PRIMARY KEY)")
    with pytest.raises(StoreError, match=r"feedback .* no column key_id"):
        AppDatabase(f"sqlite:///{db_path}")
