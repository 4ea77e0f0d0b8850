"""The schema of the releases before migrations: registry, collections, keys, audit,
feedback, conversations, jobs.

A database created by one of those releases has these tables already (and no
``alembic_version``): this revision adopts it, creating only what is missing and adding
the nullable columns that later releases of that time added as they went (the
hand-written ``ALTER TABLE ... ADD COLUMN`` it replaces).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.errors import StoreError

revision = "0001"
down_revision = None


def _tables() -> list[sa.Table]:
    meta = sa.MetaData()
    return [
        sa.Table(
            "documents",
            meta,
            sa.Column("doc_id", sa.String(64), primary_key=True),
            sa.Column("source", sa.Text, nullable=False, unique=True),
            sa.Column("title", sa.Text, nullable=False),
            sa.Column("content_hash", sa.String(64), nullable=False),
            sa.Column("modified_at", sa.Float, nullable=False),
            sa.Column("mime_type", sa.String(128), nullable=False),
            sa.Column("size_bytes", sa.Integer, nullable=False),
            sa.Column("groups", sa.Text, nullable=False),
            sa.Column("tags", sa.Text, nullable=False),
            sa.Column("chunks", sa.Integer, nullable=False),
            sa.Column("ingested_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "collections",
            meta,
            sa.Column("name", sa.String(255), primary_key=True),
            sa.Column("active", sa.String(255), nullable=False),
            sa.Column("previous", sa.String(255), nullable=True),
            sa.Column("switched_at", sa.Float, nullable=False),
        ),
        sa.Table(
            "api_keys",
            meta,
            sa.Column("id", sa.String(12), primary_key=True),
            sa.Column("secret_sha256", sa.String(64), nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("groups", sa.Text, nullable=False),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("revoked_at", sa.Float, nullable=True),
        ),
        sa.Table(
            "audit",
            meta,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("id", sa.String(32), nullable=False, unique=True),
            sa.Column("time", sa.Float, nullable=False, index=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("chunk_ids", sa.Text, nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("latency_ms", sa.Float, nullable=False),
            sa.Column("prompt_tokens", sa.Integer, nullable=False),
            sa.Column("completion_tokens", sa.Integer, nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("request_id", sa.String(128), nullable=False),
            sa.Column("conversation_id", sa.String(64), nullable=True),
            sa.Column("details", sa.Text, nullable=True),
        ),
        sa.Table(
            "feedback",
            meta,
            sa.Column("answer_id", sa.String(32), primary_key=True),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("rating", sa.String(8), nullable=False),
            sa.Column("comment", sa.Text, nullable=False),
            sa.Column("time", sa.Float, nullable=False),
        ),
        sa.Table(
            "conversations",
            meta,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("conversation_id", sa.String(64), nullable=False),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("answer", sa.Text, nullable=False),
            sa.Column("time", sa.Float, nullable=False),
            sa.Column("answer_id", sa.String(32), nullable=True),
            sa.Column("citations", sa.Text, nullable=True),
            sa.Index("ix_conversations_conversation_id_seq", "conversation_id", "seq"),
        ),
        sa.Table(
            "jobs",
            meta,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("key_id", sa.String(64), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created_at", sa.Float, nullable=False, index=True),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Column("total_files", sa.Integer, nullable=False),
            sa.Column("done_files", sa.Integer, nullable=False),
            sa.Column("chunks", sa.Integer, nullable=False),
            sa.Column("results", sa.Text, nullable=False),
            sa.Column("error", sa.Text, nullable=True),
        ),
    ]


def upgrade() -> None:
    connection = op.get_bind()
    inspector = sa.inspect(connection)
    for table in _tables():
        if not inspector.has_table(table.name):
            table.create(connection)
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise StoreError(
                    f"table {table.name} of the database has no column {column.name}, which "
                    "cannot be added to existing rows: restore a backup into an empty "
                    "database instead"
                )
            with op.batch_alter_table(table.name) as batch:
                batch.add_column(sa.Column(column.name, column.type, nullable=True))
