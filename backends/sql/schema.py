"""Bringing a database to the schema of this version: Alembic migrations
(``backends/sql/migrations/versions``), run when a process opens the database and by
``enclave db upgrade``.

Several processes may start at once (API replicas, workers): on PostgreSQL the upgrade
holds an advisory lock, so one migrates and the others find it done; on SQLite the loser
of a race finds the tables there and checks again. A database created before migrations
(no ``alembic_version``) is adopted by the first revision.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from backends.sql.engine import make_engine, translate

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK = 7_446_001  # the advisory lock id of Enclave's schema upgrades
_ATTEMPTS = 5
_IN_PROCESS = threading.Lock()  # Alembic's context is process-global: one upgrade at a time


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The revision this version of Enclave needs."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision (None: never migrated)."""
    with translate("reading the schema version"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Migrate the database to :func:`head` (nothing to do: a quick check). The revision."""
    target = head()
    if current(engine) == target:
        return target
    with _IN_PROCESS:
        return _upgrade(engine, target)


def _upgrade(engine: Engine, target: str) -> str:
    for attempt in range(_ATTEMPTS):
        try:
            with translate("upgrading the schema"), engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK})
                before = MigrationContext.configure(conn).get_current_revision()
                if before != target:
                    command.upgrade(_config(conn), "head")
                    logger.info("database schema upgraded from %s to %s", before, target)
            return target
        except Exception as exc:  # a concurrent start: the other process migrated
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            racing = isinstance(cause, OperationalError | ProgrammingError | IntegrityError)
            if not racing or attempt == _ATTEMPTS - 1 or current(engine) == target:
                if current(engine) == target:
                    return target
                raise
            time.sleep(0.05 * (attempt + 1))
    return target  # pragma: no cover - the loop returns or raises


def open_engine(url: str) -> Engine:
    """An engine on ``url`` with the schema of this version (migrated if needed)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
