"""``enclave keys`` and ``enclave audit``: the admin's commands on the application database."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from backends.sql.app import ApiKey, AppDatabase, Role
from backends.sql.registry import iso_time
from core.errors import InputError
from retrieval.filters import parse_instant
from serving.cli.context import Invocation
from serving.cli.ingest import split_groups


def _short(iso: str | None) -> str:
    """``2026-11-21T10:33:25+00:00`` as ``2026-11-21 10:33:25`` for tables."""
    return "-" if iso is None else iso[:19].replace("T", " ")


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "role": key.role,
        "groups": list(key.groups),
        "name": key.name,
        "created_at": iso_time(key.created_at),
        "revoked_at": None if key.revoked_at is None else iso_time(key.revoked_at),
    }


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add ``keys`` and ``audit`` to the root app."""
    keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
    audit_app = typer.Typer(help="Export the audit log.", no_args_is_help=True)

    @contextmanager
    def database() -> Iterator[AppDatabase]:
        db = AppDatabase(inv.settings().database_url)
        try:
            yield db
        finally:
            db.close()

    @keys_app.command("create")
    def keys_create(
        role: Annotated[str, typer.Option("--role", help="admin or user.")],
        groups: Annotated[
            str | None,
            typer.Option(help="Comma-separated groups whose documents the key may read."),
        ] = None,
        name: Annotated[str, typer.Option(help="A label: who or what uses the key.")] = "",
        as_json: Annotated[
            bool, typer.Option("--json", help='Print {"id", "key", "role", "groups"}.')
        ] = False,
    ) -> None:
        """Create an API key. The key is printed once: store it now."""
        if role not in get_args(Role):
            raise InputError(f"--role {role!r} is not a role; use --role admin or --role user")
        group_list = split_groups(groups) or []
        with database() as db:
            record, key = db.create_key(cast(Role, role), group_list, name)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "id": record.id,
                        "key": key,
                        "role": record.role,
                        "groups": list(record.groups),
                    }
                )
            )
            return
        typer.echo(key)
        typer.echo(
            f"created {record.role} key {record.id}"
            f"{' for groups ' + ','.join(record.groups) if record.groups else ''}. "
            "Store the key above now: it is not shown again.",
            err=True,
        )

    @keys_app.command("list")
    def keys_list(
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    ) -> None:
        """List API keys (ids and roles; never the keys themselves)."""
        with database() as db:
            rows = [_key_json(k) for k in db.list_keys()]
        if as_json:
            typer.echo(json.dumps(rows, ensure_ascii=False))
            return
        table = Table("id", "role", "groups", "name", "created_at", "revoked_at")
        for row in rows:
            table.add_row(
                row["id"],
                row["role"],
                ",".join(row["groups"]),
                row["name"],
                _short(row["created_at"]),
                _short(row["revoked_at"]),
            )
        Console().print(table)

    @keys_app.command("revoke")
    def keys_revoke(
        key_id: Annotated[str, typer.Argument(help="The key's id (from `enclave keys list`).")],
    ) -> None:
        """Revoke an API key: requests with it are refused from now on."""
        with database() as db:
            db.revoke_key(key_id)
        typer.echo(f"revoked key {key_id}", err=True)

    @audit_app.command("export")
    def audit_export(
        since: Annotated[
            str,
            typer.Option(
                "--since", help="ISO date or date-time (UTC unless given), e.g. 2026-11-01."
            ),
        ],
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Write to this file instead of stdout."),
        ] = None,
    ) -> None:
        """Export audit entries (with their feedback) as JSON Lines, oldest first."""
        start = parse_instant(since, "--since ")
        with database() as db:
            if output is None:
                count = _write_jsonl(db, start, sys.stdout)
            else:
                try:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    with output.open("w", encoding="utf-8") as stream:
                        count = _write_jsonl(db, start, stream)
                except OSError as exc:
                    raise InputError(
                        f"cannot write --output {output}: {exc.strerror or exc}"
                    ) from None
                typer.echo(f"exported {count} audit entries to {output}", err=True)

    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")


def _write_jsonl(db: AppDatabase, since: float, stream: TextIO) -> int:
    count = 0
    for row in db.audit_since(since):
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    stream.flush()
    return count
