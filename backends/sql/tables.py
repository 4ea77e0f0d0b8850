"""Every table of Enclave's SQL database, on one ``MetaData``: the document registry and
access rules (``registry.py``), and the application's keys, audit log, feedback,
conversations and jobs (``app.py``). Schema changes are Alembic migrations
(``backends/sql/migrations``); this module is the schema they lead to.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

MAX_CONVERSATION_ID = 64

metadata = MetaData()
documents = Table(
    "documents",
    metadata,
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


# Which physical collection a configured collection name (ENCLAVE_STORE__COLLECTION)
# currently means: `enclave reindex` builds a new one and switches this row when done.
collections = Table(
    "collections",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("active", String(255), nullable=False),
    Column("previous", String(255), nullable=True),
    Column("switched_at", Float, nullable=False),
)


# Access rules: the groups of every document under a prefix (the most specific rule wins).
access_rules = Table(
    "access_rules",
    metadata,
    Column("prefix", String(2048), primary_key=True),
    Column("groups", Text, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", Text, nullable=False),
)
# Every change of a rule: who, when, the groups before and after, documents affected.
access_changes = Table(
    "access_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False, index=True),
    Column("actor", Text, nullable=False),
    Column("prefix", String(2048), nullable=False),
    Column("before", Text, nullable=True),  # JSON list; null: there was no rule
    Column("after", Text, nullable=True),  # JSON list; null: the rule was removed
    Column("documents", Integer, nullable=False),
)


api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("groups", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)
audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("time", Float, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("question", Text, nullable=False),
    Column("chunk_ids", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("conversation_id", String(MAX_CONVERSATION_ID), nullable=True),
    # JSON: {"timings": {stage: ms}, "cited_doc_ids": [...], "abstained": bool}
    Column("details", Text, nullable=True),
)
feedback = Table(
    "feedback",
    metadata,
    Column("answer_id", String(32), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("rating", String(8), nullable=False),
    Column("comment", Text, nullable=False),
    Column("time", Float, nullable=False),
)
conversations = Table(
    "conversations",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(MAX_CONVERSATION_ID), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("time", Float, nullable=False),
    Column("answer_id", String(32), nullable=True),
    Column("citations", Text, nullable=True),  # JSON list of citation objects
    Index("ix_conversations_conversation_id_seq", "conversation_id", "seq"),
)
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False, index=True),
    Column("updated_at", Float, nullable=False),
    Column("total_files", Integer, nullable=False),
    Column("done_files", Integer, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("results", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("warnings", Text, nullable=True),  # JSON list of sentences
)
