"""The SQL schema and its Alembic migrations, on SQLite and on a real PostgreSQL server:
a new database gets exactly this version's schema; a database of the last release before
migrations is upgraded in place with its data; a locked database is a clear error."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from backends.sql.app import AppDatabase
from backends.sql.registry import Registry
from backends.sql.schema import current, head, open_engine, upgrade
from backends.sql.tables import metadata
from core.errors import StoreError
from core.types import Document
from tests.data.release_schema import RELEASE_0
from tests.processes import run

pytestmark = [pytest.mark.integration]

SECRET = "s" * 43


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'enclave.db'}"
    else:
        yield request.getfixturevalue("postgres").new_database()


def differences(url: str) -> list[object]:
    """What separates the database from this version's tables (nothing, when migrated)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def test_a_new_database_gets_exactly_this_versions_schema(url: str) -> None:
    engine = open_engine(url)
    try:
        assert current(engine) == head()
        assert upgrade(engine) == head()  # again: nothing to do
    finally:
        engine.dispose()
    assert differences(url) == []


def release_0_database(url: str) -> None:
    """A database as the last release before migrations left it, with some rows."""
    engine = create_engine(url)
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    with engine.begin() as conn:
        for statement in RELEASE_0[dialect]:
            conn.execute(text(statement))
        conn.execute(
            text(
                "INSERT INTO documents VALUES ('d1', '/kb/hr/pay.md', 'Pay', 'h1', 1.0, "
                "'text/markdown', 10, :groups, '[]', 3, 2.0)"
            ),
            {"groups": json.dumps(["hr"])},
        )
        conn.execute(
            text(
                "INSERT INTO api_keys VALUES ('0123456789ab', :digest, 'user', :groups, 'u', "
                "1.0, NULL)"
            ),
            {"digest": digest, "groups": json.dumps(["hr"])},
        )
        conn.execute(
            text("INSERT INTO jobs VALUES ('j1', 'k', 'done', 1.0, 2.0, 1, 1, 3, '[]', NULL)")
        )
    engine.dispose()


def test_a_database_of_the_last_release_is_upgraded_with_its_data(url: str) -> None:
    release_0_database(url)
    db = AppDatabase(url)  # opening it migrates it
    try:
        key = db.authenticate(f"enc_0123456789ab_{SECRET}")
        assert key is not None
        assert key.groups == ("hr",)
        job = db.get_job("j1")
        assert (job.status, job.warnings) == ("done", [])
    finally:
        db.close()
    registry = Registry(url)
    try:
        (rule,) = registry.rules()  # the document keeps its groups as a rule of its own
        assert (rule.prefix, rule.groups, rule.origin) == ("/kb/hr/pay.md", ("hr",), "upgrade")
        record = registry.get("d1")
        assert record is not None
        assert record.document.groups == ("hr",)
    finally:
        registry.close()
    assert differences(url) == []


OPEN = "import sys; from backends.sql.registry import Registry; Registry(sys.argv[1]).close()"


def test_processes_and_threads_opening_a_new_database_at_once_all_work(url: str) -> None:
    root = Path(__file__).resolve().parents[2]
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN, url], cwd=root, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors: list[Exception] = []

    def open_it() -> None:
        try:
            Registry(url).close()
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode(errors="replace")
    assert errors == []
    assert differences(url) == []


def test_a_locked_sqlite_database_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "enclave.db"
    registry = Registry(f"sqlite:///{path}")
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN EXCLUSIVE")  # another process's long write
            document = Document("d1", "/kb/a.md", "A", "h", 1.0, "text/markdown", 1, ("hr",))
            with pytest.raises(StoreError, match="the database is busy while writing"):
                registry.put(document, 1)
            holder.execute("ROLLBACK")
        registry.put(document, 1)  # free again: works
    finally:
        registry.close()


def test_enclave_db_shows_and_upgrades_the_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    release_0_database(f"sqlite:///{data / 'enclave.db'}")
    shown = run(["db", "current"], data)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"database: not migrated; this version: {head()}"
    upgraded = run(["db", "upgrade"], data)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith(f"-> {head()}")
    again = run(["db", "upgrade"], data)
    assert again.stdout.strip() == f"schema {head()}: current"
