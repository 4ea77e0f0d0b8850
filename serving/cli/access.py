"""``enclave access``: list, set and remove access rules, apply pending ones, show history."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from backends.container import Container
from backends.sql.registry import Registry, iso_time
from ingest.access import AccessControl, Change, cli_actor
from serving.cli.context import Invocation

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _show(change: Change, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "prefix": change.prefix,
                    "before": list(change.before) if change.before is not None else None,
                    "after": list(change.after) if change.after is not None else None,
                    "documents": change.documents,
                },
                ensure_ascii=False,
            )
        )
        return
    before = ",".join(change.before) if change.before is not None else "no rule"
    after = ",".join(change.after) if change.after is not None else "no rule (admins only)"
    typer.echo(
        f"{change.prefix}: {before} -> {after}; {change.documents} documents changed", err=True
    )


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add ``access`` to the root app. Reading rules needs only the database (it works
    while `enclave serve` holds an embedded store); changing them needs the store too."""

    access_app = typer.Typer(
        help="Access rules: which groups may read the documents under a folder, file or source.",
        no_args_is_help=True,
    )

    def control() -> tuple[Container, AccessControl]:
        container = inv.container()
        return container, AccessControl(container.registry, container.store)

    def reader() -> Registry:
        return Registry(inv.settings().database_url)

    @access_app.command("list")
    def access_list(as_json: AsJson = False) -> None:
        """List the rules, the documents each decides, and changes not yet applied."""
        registry = reader()
        try:
            access = AccessControl(registry)
            listing = access.listing()
            pending = len(access.pending())
        finally:
            registry.close()
        rows = [
            {
                "prefix": rule.prefix,
                "groups": list(rule.groups),
                "origin": rule.origin,
                "documents": documents,
                "updated_at": iso_time(rule.updated_at),
                "updated_by": rule.updated_by,
            }
            for rule, documents in listing
        ]
        if as_json:
            typer.echo(json.dumps({"rules": rows, "pending": pending}, ensure_ascii=False))
            return
        table = Table("prefix", "groups", "documents", "origin", "updated")
        for row in rows:
            table.add_row(
                str(row["prefix"]),
                ",".join(row["groups"]),  # type: ignore[arg-type]
                str(row["documents"]),
                str(row["origin"]),
                f"{row['updated_at']} by {row['updated_by']}",
            )
        Console().print(table)
        if pending:
            typer.echo(
                f"{pending} documents differ from their rules (an interrupted change); "
                "`enclave access apply` fixes them",
                err=True,
            )

    @access_app.command("set")
    def access_set(
        path: Annotated[str, typer.Argument(help="A folder or file (resolved), or a source id.")],
        groups: Annotated[
            str, typer.Option(help="Comma-separated groups that may read what lies under PATH.")
        ],
        as_json: AsJson = False,
    ) -> None:
        """Let GROUPS read everything under PATH: recorded, then applied to the documents
        already ingested (their chunks get the new groups; nothing is re-embedded)."""
        from serving.cli.ingest import split_groups

        names = split_groups(groups) or []
        container, access = control()
        try:
            change = access.set_rule(path, names, cli_actor())
        finally:
            container.close()
        _show(change, as_json)

    @access_app.command("remove")
    def access_remove(
        path: Annotated[str, typer.Argument(help="The path or source id of the rule.")],
        as_json: AsJson = False,
    ) -> None:
        """Remove the rule at PATH: its documents fall back to the rule above, or to admins
        only when none covers them."""
        container, access = control()
        try:
            change = access.remove_rule(path, cli_actor())
        finally:
            container.close()
        _show(change, as_json)

    @access_app.command("apply")
    def access_apply() -> None:
        """Give every document the groups its rule says (after an interrupted change)."""
        container, access = control()
        try:
            changed = access.apply()
        finally:
            container.close()
        typer.echo(f"{changed} documents changed", err=True)

    @access_app.command("history")
    def access_history(
        limit: Annotated[int, typer.Option(min=1, max=10_000, help="Changes to show.")] = 50,
        as_json: AsJson = False,
    ) -> None:
        """The latest rule changes, newest first: when, who, before and after."""
        registry = reader()
        try:
            changes = registry.access_history(limit)
        finally:
            registry.close()
        if as_json:
            typer.echo(json.dumps(changes, ensure_ascii=False))
            return
        table = Table("time", "actor", "prefix", "before", "after", "documents")
        for c in changes:
            table.add_row(
                str(c["time"]),
                str(c["actor"]),
                str(c["prefix"]),
                ",".join(c["before"]) if c["before"] is not None else "-",
                ",".join(c["after"]) if c["after"] is not None else "(removed)",
                str(c["documents"]),
            )
        Console().print(table)

    app.add_typer(access_app, name="access")
