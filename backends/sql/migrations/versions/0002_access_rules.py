"""Access rules and their history; job warnings. A document ingested before rules keeps
its groups: it gets a rule of its own with them (origin ``upgrade``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    rules = op.create_table(
        "access_rules",
        sa.Column("prefix", sa.String(2048), primary_key=True),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
    )
    op.create_table(
        "access_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False, index=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("prefix", sa.String(2048), nullable=False),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("documents", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("warnings", sa.Text, nullable=True))
    documents = sa.table("documents", sa.column("source"), sa.column("groups"))
    rows = op.get_bind().execute(sa.select(documents.c.source, documents.c.groups)).all()
    if rows:
        now = time.time()
        op.bulk_insert(
            rules,
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
