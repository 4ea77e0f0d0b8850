"""The SQL engine: one per database URL and process, with SQLite tuned for several
processes (WAL journal, a busy timeout), and SQLAlchemy's errors translated here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError, StatementError

from core.errors import StoreError


def make_engine(url: str) -> Engine:
    """An engine for the application's SQL database (any SQLAlchemy URL).

    For SQLite, the database's folder is created and every connection gets WAL
    journaling and a 5 s busy timeout, so several processes can share the file.
    Raises :class:`StoreError` when the URL cannot be used.
    """
    try:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
    except (SQLAlchemyError, ValueError, ImportError) as exc:  # ImportError: driver missing
        raise _open_error(exc) from exc
    except OSError as exc:
        raise StoreError(
            f"cannot open the database: cannot create its folder: "
            f"{exc.strerror or exc}. Check ENCLAVE_DATABASE__URL and ENCLAVE_DATA_DIR."
        ) from exc
    return engine


def _open_error(exc: Exception) -> StoreError:
    return StoreError(
        f"cannot open the database: {exc.__class__.__name__}: {exc}. Check ENCLAVE_DATABASE__URL."
    )


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def describe(exc: SQLAlchemyError) -> str:
    """The error without the SQL statement and its parameters (which may hold secrets)."""
    if isinstance(exc, StatementError) and exc.orig is not None:
        return f"{exc.orig.__class__.__name__}: {exc.orig}"
    return f"{exc.__class__.__name__}: {exc}"


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """SQLAlchemy's errors as :class:`StoreError` (the API's 503) naming ``action``; a
    locked SQLite database says so and what to do."""
    try:
        yield
    except OperationalError as exc:
        if "database is locked" in str(exc):
            raise StoreError(
                f"the database is busy while {action} (another process holds a long write "
                "on the SQLite file); try again, or use PostgreSQL (ENCLAVE_DATABASE__URL) "
                "for several processes"
            ) from exc
        raise _failed(action, exc) from exc
    except SQLAlchemyError as exc:
        raise _failed(action, exc) from exc


def _failed(action: str, exc: SQLAlchemyError) -> StoreError:
    return StoreError(
        f"the database failed while {action}: {describe(exc)}. Check that the database "
        "(ENCLAVE_DATABASE__URL) is reachable and writable."
    )
