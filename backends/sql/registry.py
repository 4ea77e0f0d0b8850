"""The document registry (SQL): what was ingested from where, with which content hash.

A SQL table (SQLite under the data dir by default, any SQLAlchemy URL by setting).
The vector store holds the chunks; the registry is written only after a document's
chunks are all in the store, so a run interrupted at any point is repaired by
running it again.

It also holds the access rules (path or source prefix -> groups), the durable state a
document's groups come from, and the history of their changes. A database created
before rules existed gets one rule per document it lists, with that document's groups
(migration 0002), so an upgrade changes nobody's access. SQLAlchemy's errors leave as
:class:`~core.errors.StoreError` (``backends/sql/engine.py``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from backends.sql.engine import translate
from backends.sql.schema import open_engine
from backends.sql.tables import access_changes, access_rules, collections, documents
from core.errors import NotFoundError
from core.types import AccessRule, Document


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


class Registry:
    """CRUD on the ``documents`` table, the access rules and their history, and the
    active collection per configured name."""

    def __init__(self, database: str | Engine) -> None:
        """On a database URL (opened, migrated, closed with the registry) or on an engine
        shared with the application database (``open_engine``)."""
        self._owned = isinstance(database, str)
        self._engine: Engine = open_engine(database) if isinstance(database, str) else database

    # -- access rules ---------------------------------------------------------------------
    def rules(self) -> list[AccessRule]:
        """Every access rule, by prefix."""
        with translate("reading the registry"), self._engine.connect() as conn:
            rows = conn.execute(select(access_rules).order_by(access_rules.c.prefix)).all()
        return [_rule_from_row(r._mapping) for r in rows]

    def set_rule(
        self, prefix: str, groups: tuple[str, ...], actor: str, origin: str, documents: int
    ) -> AccessRule | None:
        """Record the rule ``prefix -> groups`` and its change in the history (in one
        transaction); the previous rule at that prefix, if any."""
        now = time.time()
        with translate("writing the registry"), self._engine.begin() as conn:
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
        with translate("writing the registry"), self._engine.begin() as conn:
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
        with translate("reading the registry"), self._engine.connect() as conn:
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
        with translate("writing the registry"), self._engine.begin() as conn:
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
        with translate("reading the registry"), self._engine.connect() as conn:
            row = conn.execute(select(documents).where(documents.c.doc_id == doc_id)).first()
        return _from_row(row._mapping) if row is not None else None

    def all(self) -> list[RegisteredDocument]:
        with translate("reading the registry"), self._engine.connect() as conn:
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
        with translate("writing the registry"), self._engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.doc_id == document.doc_id))
            conn.execute(documents.insert().values(**values))

    def remove(self, doc_id: str) -> None:
        with translate("writing the registry"), self._engine.begin() as conn:
            conn.execute(delete(documents).where(documents.c.doc_id == doc_id))

    def active_collection(self, name: str) -> str:
        """The physical collection that ``name`` means now (``name`` itself unless a
        reindex switched it)."""
        with translate("reading the registry"), self._engine.connect() as conn:
            row = conn.execute(
                select(collections.c.active).where(collections.c.name == name)
            ).first()
        return str(row[0]) if row is not None else name

    def previous_collection(self, name: str) -> str | None:
        """The physical collection ``name`` meant before the last switch, if any."""
        with translate("reading the registry"), self._engine.connect() as conn:
            row = conn.execute(
                select(collections.c.previous).where(collections.c.name == name)
            ).first()
        return str(row[0]) if row is not None and row[0] is not None else None

    def switch_collection(self, name: str, active: str, previous: str | None) -> None:
        """Make ``name`` mean ``active`` (in one transaction), remembering ``previous``."""
        with translate("writing the registry"), self._engine.begin() as conn:
            conn.execute(delete(collections).where(collections.c.name == name))
            conn.execute(
                collections.insert().values(
                    name=name, active=active, previous=previous, switched_at=time.time()
                )
            )

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()


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
