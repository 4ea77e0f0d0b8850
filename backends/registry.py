"""The document registry (SQL): what was ingested from where, with which content hash.

A SQL table (SQLite under the data dir by default, any SQLAlchemy URL by setting).
The vector store holds the chunks; the registry is written only after a document's
chunks are all in the store, so a run interrupted at any point is repaired by
running it again.

It also holds the access rules (path or source prefix -> groups), the durable state a
document's groups come from, and the history of their changes. A database created
before rules existed gets one rule per document it lists, with that document's groups,
so an upgrade changes nobody's access.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from core.errors import NotFoundError, StoreError
from core.types import AccessRule, Document

_metadata = MetaData()
documents = Table(
    "documents",
    _metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("source", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("modified_at", Float, nullable=False),
    Column("mime_type", String(128), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("groups", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("ingested_at", Float, nullable=False),
)


@dataclass(frozen=True, slots=True)
class RegisteredDocument:
    """A document in the registry, with its chunk count and ingestion time."""

    document: Document
    chunks: int
    ingested_at: float

    def as_dict(self) -> dict[str, Any]:
        """The document as `enclave docs list --json` and the API show it."""
        d = self.document
        return {
            "doc_id": d.doc_id,
            "source": d.source,
            "title": d.title,
            "chunks": self.chunks,
            "groups": list(d.groups),
            "tags": list(d.tags),
            "mime_type": d.mime_type,
            "size_bytes": d.size_bytes,
            "modified_at": iso_time(d.modified_at),
            "ingested_at": iso_time(self.ingested_at),
        }


def iso_time(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# Which physical collection a configured collection name (ENCLAVE_STORE__COLLECTION)
# currently means: `enclave reindex` builds a new one and switches this row when done.
collections = Table(
    "collections",
    _metadata,
    Column("name", String(255), primary_key=True),
    Column("active", String(255), nullable=False),
    Column("previous", String(255), nullable=True),
    Column("switched_at", Float, nullable=False),
)


# Access rules: the groups of every document under a prefix (the most specific rule wins).
access_rules = Table(
    "access_rules",
    _metadata,
    Column("prefix", String(2048), primary_key=True),
    Column("groups", Text, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", Text, nullable=False),
)
# Every change of a rule: who, when, the groups before and after, documents affected.
access_changes = Table(
    "access_changes",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("actor", Text, nullable=False),
    Column("prefix", String(2048), nullable=False),
    Column("before", Text, nullable=True),  # JSON list; null: there was no rule
    Column("after", Text, nullable=True),  # JSON list; null: the rule was removed
    Column("documents", Integer, nullable=False),
)


class Registry:
    """CRUD on the ``documents`` table, the access rules and their history, and the
    active collection per configured name."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = make_engine(url)
        try:
            had_rules = inspect(self._engine).has_table("access_rules")
            create_tables(_metadata, self._engine)
            if not had_rules:
                with contextlib.suppress(IntegrityError):  # another process did it first
                    self.keep_document_groups()
        except SQLAlchemyError as exc:
            raise _open_error(exc) from exc

    # -- access rules ---------------------------------------------------------------------
    def rules(self) -> list[AccessRule]:
        """Every access rule, by prefix."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(access_rules).order_by(access_rules.c.prefix)).all()
        return [_rule_from_row(r._mapping) for r in rows]

    def set_rule(
        self, prefix: str, groups: tuple[str, ...], actor: str, origin: str, documents: int
    ) -> AccessRule | None:
        """Record the rule ``prefix -> groups`` and its change in the history (in one
        transaction); the previous rule at that prefix, if any."""
        now = time.time()
        with self._engine.begin() as conn:
            row = conn.execute(select(access_rules).where(access_rules.c.prefix == prefix)).first()
            previous = _rule_from_row(row._mapping) if row is not None else None
            conn.execute(delete(access_rules).where(access_rules.c.prefix == prefix))
            conn.execute(
                access_rules.insert().values(
                    prefix=prefix,
                    groups=json.dumps(list(groups)),
                    origin=origin,
                    updated_at=now,
                    updated_by=actor,
                )
            )
            if previous is None or previous.groups != groups:
                conn.execute(
                    access_changes.insert().values(
                        time=now,
                        actor=actor,
                        prefix=prefix,
                        before=json.dumps(list(previous.groups)) if previous else None,
                        after=json.dumps(list(groups)),
                        documents=documents,
                    )
                )
        return previous

    def remove_rule(self, prefix: str, actor: str, documents: int) -> AccessRule:
        """Remove the rule at ``prefix`` (recorded in the history); the rule removed."""
        with self._engine.begin() as conn:
            row = conn.execute(select(access_rules).where(access_rules.c.prefix == prefix)).first()
            if row is None:
                raise NotFoundError(
                    f"no access rule for {prefix!r}; `enclave access list` shows the rules"
                )
            previous = _rule_from_row(row._mapping)
            conn.execute(delete(access_rules).where(access_rules.c.prefix == prefix))
            conn.execute(
                access_changes.insert().values(
                    time=time.time(),
                    actor=actor,
                    prefix=prefix,
                    before=json.dumps(list(previous.groups)),
                    after=None,
                    documents=documents,
                )
            )
        return previous

    def access_history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest rule changes, newest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(access_changes).order_by(access_changes.c.seq.desc()).limit(limit)
            ).all()
        return [
            {
                "time": iso_time(r.time),
                "actor": r.actor,
                "prefix": r.prefix,
                "before": json.loads(r.before) if r.before is not None else None,
                "after": json.loads(r.after) if r.after is not None else None,
                "documents": r.documents,
            }
            for r in rows
        ]

    def keep_document_groups(self) -> None:
        """For documents from before access rules (an upgraded database, an old backup
        restored): one rule per document without a rule of its own, with the groups it has."""
        now = time.time()
        with self._engine.begin() as conn:
            ruled = {r.prefix for r in conn.execute(select(access_rules.c.prefix))}
            rows = [
                r
                for r in conn.execute(select(documents.c.source, documents.c.groups)).all()
                if r.source not in ruled
            ]
            if not rows:
                return
            conn.execute(
                access_rules.insert(),
                [
                    {
                        "prefix": r.source,
                        "groups": r.groups,
                        "origin": "upgrade",
                        "updated_at": now,
                        "updated_by": "upgrade (the groups the document had)",
                    }
                    for r in rows
                ],
            )

    def get(self, doc_id: str) -> RegisteredDocument | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(documents).where(documents.c.doc_id == doc_id)).first()
        return _from_row(row._mapping) if row is not None else None

    def all(self) -> list[RegisteredDocument]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(documents).order_by(documents.c.source)).all()
        return [_from_row(r._mapping) for r in rows]

    def put(self, document: Document, chunks: int) -> None:
        values = {
            "doc_id": document.doc_id,
            "source": document.source,
            "title": document.title,
            "content_hash": document.content_hash,
            "modified_at": document.modified_at,
            "mime_type": document.mime_type,
            "size_bytes": document.size_bytes,
            "groups": json.dumps(list(document.groups)),
            "tags": json.dumps(list(document.tags)),
            "chunks": chunks,
            "ingested_at": time.time(),
        }
        with self._engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.doc_id == document.doc_id))
            conn.execute(documents.insert().values(**values))

    def remove(self, doc_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.doc_id == doc_id))

    def active_collection(self, name: str) -> str:
        """The physical collection that ``name`` means now (``name`` itself unless a
        reindex switched it)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(collections.c.active).where(collections.c.name == name)
            ).first()
        return str(row[0]) if row is not None else name

    def previous_collection(self, name: str) -> str | None:
        """The physical collection ``name`` meant before the last switch, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(collections.c.previous).where(collections.c.name == name)
            ).first()
        return str(row[0]) if row is not None and row[0] is not None else None

    def switch_collection(self, name: str, active: str, previous: str | None) -> None:
        """Make ``name`` mean ``active`` (in one transaction), remembering ``previous``."""
        with self._engine.begin() as conn:
            conn.execute(delete(collections).where(collections.c.name == name))
            conn.execute(
                collections.insert().values(
                    name=name, active=active, previous=previous, switched_at=time.time()
                )
            )

    def close(self) -> None:
        self._engine.dispose()


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


def create_tables(metadata: MetaData, engine: Engine, attempts: int = 5) -> None:
    """``metadata.create_all`` when several processes may start at once (workers, API
    replicas): the loser of a create race finds the table there and checks again."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            if "already exists" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def _open_error(exc: Exception) -> StoreError:
    return StoreError(
        f"cannot open the database: {exc.__class__.__name__}: {exc}. Check ENCLAVE_DATABASE__URL."
    )


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _from_row(row: object) -> RegisteredDocument:
    r = dict(row)  # type: ignore[call-overload]
    return RegisteredDocument(
        document=Document(
            doc_id=r["doc_id"],
            source=r["source"],
            title=r["title"],
            content_hash=r["content_hash"],
            modified_at=r["modified_at"],
            mime_type=r["mime_type"],
            size_bytes=r["size_bytes"],
            groups=tuple(json.loads(r["groups"])),
            tags=tuple(json.loads(r["tags"])),
        ),
        chunks=r["chunks"],
        ingested_at=r["ingested_at"],
    )


def _rule_from_row(row: object) -> AccessRule:
    r = dict(row)  # type: ignore[call-overload]
    return AccessRule(
        prefix=r["prefix"],
        groups=tuple(json.loads(r["groups"])),
        updated_at=r["updated_at"],
        updated_by=r["updated_by"],
        origin=r["origin"],
    )
