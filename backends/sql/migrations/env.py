"""Alembic's environment: migrations run on the connection ``backends.sql.schema``
hands over (never on a URL of their own), against the one ``MetaData``."""

from __future__ import annotations

from alembic import context

from backends.sql.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
