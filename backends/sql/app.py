"""The application database: API keys, the audit log, feedback, conversations, jobs.

It lives in the same SQL database as the document registry (``settings.database_url``:
SQLite under the data dir by default, any SQLAlchemy URL by setting), in its own tables of
the one schema (``backends/sql/tables.py``), on the same engine when one is shared.

API keys are ``enc_<id>_<secret>``: the 12-hex-digit id is stored as it is, the secret
only as its SHA-256; the plaintext key is returned once, by :meth:`AppDatabase.create_key`,
and never stored or logged. Every SQLAlchemy error is translated to
:class:`~core.errors.StoreError` (``backends/sql/engine.py``). Schema changes are
Alembic migrations, applied when the database is opened (``backends/sql/schema.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from backends.sql.engine import translate
from backends.sql.schema import open_engine
from backends.sql.tables import MAX_CONVERSATION_ID, api_keys, audit, conversations, feedback, jobs
from core.errors import InputError, NotFoundError
from core.redact import redact
from core.types import Principal, group_names

logger = logging.getLogger(__name__)

Role = Literal["admin", "user"]
Rating = Literal["up", "down"]
JobStatus = Literal["queued", "running", "done", "failed"]

KEY_PREFIX = "enc_"
_KEY_RE = re.compile(r"enc_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{16,128})")
_MAX_NAME = 200
_MAX_TITLE = 80
_PAGE = 500


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored (never the key itself)."""

    id: str
    role: Role
    groups: tuple[str, ...]
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def principal(self) -> Principal:
        """Who requests made with this key act as."""
        label = f"key {self.id}" + (f" ({self.name})" if self.name else "")
        return Principal(name=label, groups=self.groups, admin=self.role == "admin")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One request to record: what was asked, what was used, what was answered."""

    kind: str  # "ask" | "search" | "chat"
    key_id: str
    question: str
    chunk_ids: tuple[str, ...]
    model: str
    answer: str
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: str = "ok"
    request_id: str = ""
    conversation_id: str | None = None
    # answers only (None: not an answer, nothing recorded in ``details``)
    timings_ms: Mapping[str, float] | None = None  # per stage, milliseconds
    cited_doc_ids: tuple[str, ...] = ()
    abstained: bool | None = None
    claims: tuple[int, int] | None = None  # (sentences supported, sentences checked)

    def details(self) -> dict[str, Any] | None:
        """What the ``details`` column holds: per-stage timings, cited documents,
        abstained, and the verification outcome (claims supported of claims checked)."""
        if self.timings_ms is None and self.abstained is None and not self.cited_doc_ids:
            return None
        details: dict[str, Any] = {
            "timings": {k: round(float(v), 1) for k, v in (self.timings_ms or {}).items()},
            "cited_doc_ids": list(self.cited_doc_ids),
            "abstained": bool(self.abstained),
        }
        if self.claims is not None:
            details["claims"] = {"supported": self.claims[0], "checked": self.claims[1]}
        return details


@dataclass(frozen=True, slots=True)
class Job:
    """An ingestion job and its progress."""

    id: str
    key_id: str
    status: str  # queued | running | done | failed
    created_at: float
    updated_at: float
    total_files: int
    done_files: int
    chunks: int
    results: list[dict[str, Any]]  # per file: {"source", "status", "reason"?}
    error: str | None
    warnings: list[str]


class AppDatabase:
    """The application's tables, on any SQLAlchemy URL."""

    def __init__(self, database: str | Engine) -> None:
        """On a database URL (opened, migrated, closed with it) or a shared engine."""
        self._owned = isinstance(database, str)
        self._engine = open_engine(database) if isinstance(database, str) else database

    # -- API keys ---------------------------------------------------------------------

    def create_key(
        self, role: Role, groups: Sequence[str] = (), name: str = ""
    ) -> tuple[ApiKey, str]:
        """A new key: its record and the plaintext key, which is shown only this once."""
        if role not in get_args(Role):
            raise InputError(f"unknown role {role!r}; use admin or user")
        clean_groups = group_names(groups)
        name = name.strip()
        if len(name) > _MAX_NAME:
            raise InputError(f"key name is {len(name)} characters; keep it under {_MAX_NAME}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(
            id=key_id,
            role=role,
            groups=clean_groups,
            name=name,
            created_at=time.time(),
            revoked_at=None,
        )
        with translate("creating an API key"), self._engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    secret_sha256=_sha256(secret),
                    role=role,
                    groups=json.dumps(list(clean_groups)),
                    name=name,
                    created_at=record.created_at,
                    revoked_at=None,
                )
            )
        logger.info("created API key %s (role %s)", key_id, role)
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def authenticate(self, key: str) -> ApiKey | None:
        """The key's record, or ``None`` when it is malformed, unknown or revoked."""
        match = _KEY_RE.fullmatch(key.strip())
        if match is None:
            return None
        with translate("checking an API key"), self._engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == match["id"])).first()
        offered = _sha256(match["secret"])
        stored = str(row._mapping["secret_sha256"]) if row is not None else "0" * 64
        if not hmac.compare_digest(offered, stored) or row is None:
            return None
        record = _key_from_row(row._mapping)
        return None if record.revoked_at is not None else record

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with translate("listing API keys"), self._engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_key_from_row(r._mapping) for r in rows]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key for good (revoking it again changes nothing)."""
        with translate("revoking an API key"), self._engine.begin() as conn:
            row = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise NotFoundError(f"no API key {key_id}; `enclave keys list` shows the keys")
            if row.revoked_at is None:
                conn.execute(
                    update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=time.time())
                )
        logger.info("revoked API key %s", key_id)

    # -- audit and feedback -----------------------------------------------------------

    def record(self, entry: AuditEntry, redact_pii: bool = False) -> str:
        """Store one audit entry (now); return its id, which is also the answer's id."""
        entry_id = uuid.uuid4().hex
        question = redact(entry.question) if redact_pii else entry.question
        answer = redact(entry.answer) if redact_pii else entry.answer
        details = entry.details()
        with translate("writing the audit log"), self._engine.begin() as conn:
            conn.execute(
                audit.insert().values(
                    id=entry_id,
                    time=time.time(),
                    kind=entry.kind,
                    key_id=entry.key_id,
                    question=question,
                    chunk_ids=json.dumps(list(entry.chunk_ids)),
                    model=entry.model,
                    answer=answer,
                    latency_ms=float(entry.latency_ms),
                    prompt_tokens=int(entry.prompt_tokens),
                    completion_tokens=int(entry.completion_tokens),
                    status=entry.status,
                    request_id=entry.request_id,
                    conversation_id=entry.conversation_id,
                    details=None if details is None else json.dumps(details),
                )
            )
        return entry_id

    def add_feedback(
        self,
        answer_id: str,
        key_id: str,
        rating: Rating,
        comment: str = "",
        redact_pii: bool = False,
    ) -> None:
        """Rate an answer made with the same key; newer feedback replaces older."""
        if rating not in get_args(Rating):
            raise InputError(f"unknown rating {rating!r}; use up or down")
        text = redact(comment) if redact_pii else comment
        with translate("writing feedback"), self._engine.begin() as conn:
            owner = conn.execute(
                select(audit.c.key_id).where(audit.c.id == answer_id)
            ).scalar_one_or_none()
            if owner != key_id:  # unknown or another key's: the same answer for both
                raise NotFoundError(f"no answer {answer_id} for this key")
            conn.execute(delete(feedback).where(feedback.c.answer_id == answer_id))
            conn.execute(
                feedback.insert().values(
                    answer_id=answer_id,
                    key_id=key_id,
                    rating=rating,
                    comment=text,
                    time=time.time(),
                )
            )

    def audit_since(self, since: float) -> Iterator[dict[str, Any]]:
        """Audit rows at or after ``since`` (epoch seconds), oldest first, with feedback."""
        query = (
            select(
                audit,
                feedback.c.rating.label("fb_rating"),
                feedback.c.comment.label("fb_comment"),
                feedback.c.time.label("fb_time"),
            )
            .select_from(audit.outerjoin(feedback, feedback.c.answer_id == audit.c.id))
            .where(audit.c.time >= since)
            .order_by(audit.c.time, audit.c.seq)
            .limit(_PAGE)
        )
        page_query = query
        while True:
            with translate("reading the audit log"), self._engine.connect() as conn:
                rows = [r._mapping for r in conn.execute(page_query).all()]
            for row in rows:
                yield _audit_row(row)
            if len(rows) < _PAGE:
                return
            last_time, last_seq = rows[-1]["time"], rows[-1]["seq"]
            page_query = query.where(
                or_(
                    audit.c.time > last_time,
                    and_(audit.c.time == last_time, audit.c.seq > last_seq),
                )
            )

    # -- conversations ----------------------------------------------------------------

    def conversation(
        self, conversation_id: str, key_id: str, max_turns: int = 6
    ) -> list[tuple[str, str]]:
        """The last ``max_turns`` (question, answer) pairs, oldest first; ``[]`` if new."""
        _check_conversation_id(conversation_id)
        with translate("reading a conversation"), self._engine.connect() as conn:
            self._check_owner(conn, conversation_id, key_id)
            rows = conn.execute(
                select(conversations.c.question, conversations.c.answer)
                .where(conversations.c.conversation_id == conversation_id)
                .order_by(conversations.c.seq.desc())
                .limit(max_turns)
            ).all()
        return [(str(r.question), str(r.answer)) for r in reversed(rows)]

    def append_turn(
        self,
        conversation_id: str,
        key_id: str,
        question: str,
        answer: str,
        answer_id: str | None = None,
        citations: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Add one turn to a conversation (started by this call when the id is new), with
        the answer's id and citations (as ``/v1/ask`` returns them) when given."""
        _check_conversation_id(conversation_id)
        with translate("writing a conversation"), self._engine.begin() as conn:
            self._check_owner(conn, conversation_id, key_id)
            conn.execute(
                conversations.insert().values(
                    conversation_id=conversation_id,
                    key_id=key_id,
                    question=question,
                    answer=answer,
                    time=time.time(),
                    answer_id=answer_id,
                    citations=(
                        None
                        if citations is None
                        else json.dumps([dict(c) for c in citations], ensure_ascii=False)
                    ),
                )
            )

    def list_conversations(self, key_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The key's conversations, most recently updated first: id, title (the first
        question, cut to 80 characters), number of turns, last update (ISO)."""
        c = conversations
        with translate("listing conversations"), self._engine.connect() as conn:
            groups = conn.execute(
                select(
                    c.c.conversation_id,
                    func.count().label("turns"),
                    func.min(c.c.seq).label("first_seq"),
                    func.max(c.c.time).label("updated"),
                )
                .where(c.c.key_id == key_id)
                .group_by(c.c.conversation_id)
                .order_by(func.max(c.c.time).desc(), func.max(c.c.seq).desc())
                .limit(limit)
            ).all()
            firsts = [g.first_seq for g in groups]
            titles = {
                r.seq: str(r.question)
                for r in conn.execute(select(c.c.seq, c.c.question).where(c.c.seq.in_(firsts)))
            }
        return [
            {
                "conversation_id": str(g.conversation_id),
                "title": _title(titles.get(g.first_seq, "")),
                "turns": int(g.turns),
                "updated_at": _iso(float(g.updated)),
            }
            for g in groups
        ]

    def conversation_turns(self, conversation_id: str, key_id: str) -> list[dict[str, Any]]:
        """Every turn of one of the key's conversations, oldest first (another key's
        conversation is as unknown as one that does not exist)."""
        _check_conversation_id(conversation_id)
        with translate("reading a conversation"), self._engine.connect() as conn:
            self._check_owner(conn, conversation_id, key_id, must_exist=True)
            rows = conn.execute(
                select(conversations)
                .where(conversations.c.conversation_id == conversation_id)
                .order_by(conversations.c.seq)
            ).all()
        return [
            {
                "question": str(r.question),
                "answer": str(r.answer),
                "answer_id": r.answer_id,
                "citations": [] if r.citations is None else json.loads(r.citations),
                "time": _iso(float(r.time)),
            }
            for r in rows
        ]

    def delete_conversation(self, conversation_id: str, key_id: str) -> None:
        """Delete one of the key's conversations (its audit entries stay)."""
        _check_conversation_id(conversation_id)
        with translate("deleting a conversation"), self._engine.begin() as conn:
            self._check_owner(conn, conversation_id, key_id, must_exist=True)
            conn.execute(
                delete(conversations).where(conversations.c.conversation_id == conversation_id)
            )

    @staticmethod
    def _check_owner(
        conn: Connection, conversation_id: str, key_id: str, must_exist: bool = False
    ) -> None:
        owner = conn.execute(
            select(conversations.c.key_id)
            .where(conversations.c.conversation_id == conversation_id)
            .order_by(conversations.c.seq)
            .limit(1)
        ).scalar_one_or_none()
        if (owner is not None or must_exist) and owner != key_id:
            raise NotFoundError(f"no conversation {conversation_id} for this key")

    # -- jobs -------------------------------------------------------------------------

    def create_job(self, key_id: str, total_files: int) -> str:
        """A new queued job; returns its id."""
        job_id = uuid.uuid4().hex
        now = time.time()
        with translate("creating a job"), self._engine.begin() as conn:
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    key_id=key_id,
                    status="queued",
                    created_at=now,
                    updated_at=now,
                    total_files=total_files,
                    done_files=0,
                    chunks=0,
                    results="[]",
                    error=None,
                )
            )
        return job_id

    def update_job(
        self,
        job_id: str,
        *,
        status: str | None = None,
        total_files: int | None = None,
        done_files: int | None = None,
        chunks: int | None = None,
        results: list[dict[str, Any]] | None = None,
        error: str | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        """Change the given fields of a job (and its ``updated_at``)."""
        if status is not None and status not in get_args(JobStatus):
            raise InputError(f"unknown job status {status!r}; use queued, running, done or failed")
        given: dict[str, Any] = {
            "status": status,
            "total_files": total_files,
            "done_files": done_files,
            "chunks": chunks,
            "results": None if results is None else json.dumps(results, ensure_ascii=False),
            "error": error,
            "warnings": None if warnings is None else json.dumps(warnings, ensure_ascii=False),
        }
        values = {name: value for name, value in given.items() if value is not None}
        values["updated_at"] = time.time()
        with translate("updating a job"), self._engine.begin() as conn:
            updated = conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            if updated.rowcount == 0:
                raise NotFoundError(f"no job {job_id}")

    def get_job(self, job_id: str) -> Job:
        """A job by id."""
        with translate("reading a job"), self._engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"no job {job_id}")
        return _job_from_row(row._mapping)

    def list_jobs(self, limit: int = 50) -> list[Job]:
        """The latest ``limit`` jobs, newest first."""
        with translate("listing jobs"), self._engine.connect() as conn:
            rows = conn.execute(
                select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
            ).all()
        return [_job_from_row(r._mapping) for r in rows]

    def close(self) -> None:
        """Release the database connections (of an engine this object opened)."""
        if self._owned:
            self._engine.dispose()


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_conversation_id(conversation_id: str) -> None:
    if not conversation_id or len(conversation_id) > MAX_CONVERSATION_ID:
        raise InputError(
            f"conversation id must be 1-{MAX_CONVERSATION_ID} characters, "
            f"not {len(conversation_id)}"
        )


def _title(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= _MAX_TITLE else line[: _MAX_TITLE - 1].rstrip() + "…"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _key_from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=str(row["id"]),
        role=cast(Role, row["role"]),
        groups=tuple(json.loads(row["groups"])),
        name=str(row["name"]),
        created_at=float(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
    )


def _audit_row(row: Any) -> dict[str, Any]:
    rated = row["fb_rating"] is not None
    return {
        "id": row["id"],
        "time": _iso(row["time"]),
        "kind": row["kind"],
        "key_id": row["key_id"],
        "question": row["question"],
        "chunk_ids": json.loads(row["chunk_ids"]),
        "model": row["model"],
        "answer": row["answer"],
        "latency_ms": row["latency_ms"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "status": row["status"],
        "request_id": row["request_id"],
        "conversation_id": row["conversation_id"],
        "details": None if row["details"] is None else json.loads(row["details"]),
        "feedback": (
            {
                "rating": row["fb_rating"],
                "comment": row["fb_comment"],
                "time": _iso(row["fb_time"]),
            }
            if rated
            else None
        ),
    }


def _job_from_row(row: Any) -> Job:
    return Job(
        id=str(row["id"]),
        key_id=str(row["key_id"]),
        status=str(row["status"]),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        total_files=int(row["total_files"]),
        done_files=int(row["done_files"]),
        chunks=int(row["chunks"]),
        results=list(json.loads(row["results"])),
        error=None if row["error"] is None else str(row["error"]),
        warnings=list(json.loads(row["warnings"])) if row.get("warnings") else [],
    )
