"""``enclave db``: the SQL database's schema version, and upgrading it."""

from __future__ import annotations

import typer

from backends.sql.engine import make_engine
from backends.sql.schema import current, head, upgrade
from serving.cli.context import Invocation


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add ``db`` to the root app."""
    db_app = typer.Typer(help="The SQL database's schema (Alembic migrations).")

    @db_app.command("upgrade")
    def db_upgrade() -> None:
        """Migrate the database to this version's schema (also done at every start)."""
        engine = make_engine(inv.settings().database_url)
        try:
            before = current(engine)
            after = upgrade(engine)
        finally:
            engine.dispose()
        shown = before or "none (a new database, or one from before migrations)"
        typer.echo(f"schema {shown} -> {after}" if before != after else f"schema {after}: current")

    @db_app.command("current")
    def db_current() -> None:
        """Show the database's schema revision and the one this version needs."""
        engine = make_engine(inv.settings().database_url)
        try:
            revision = current(engine)
        finally:
            engine.dispose()
        typer.echo(f"database: {revision or 'not migrated'}; this version: {head()}")

    app.add_typer(db_app, name="db")
