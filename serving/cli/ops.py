"""``enclave reindex``, ``enclave backup`` and ``enclave restore``: operating a knowledge base."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.errors import InputError
from serving.cli.context import Invocation


def reindexed_name(collection: str, embedder: str) -> str:
    """The collection ``enclave reindex`` builds for ``embedder``: readable, and the same
    on every run, so an interrupted reindex is rebuilt in place when repeated."""
    slug = re.sub(r"[^a-z0-9]+", "-", embedder.lower()).strip("-")[-40:]
    digest = hashlib.sha256(embedder.encode()).hexdigest()[:8]
    return f"{collection}--{slug}-{digest}"


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add ``reindex``, ``backup`` and ``restore`` to the root app."""

    @app.command()
    def reindex(
        drop_previous: Annotated[
            bool,
            typer.Option(
                "--drop-previous",
                help="Only delete the collection the last reindex replaced (once every API "
                "process runs with the new embedder).",
            ),
        ] = False,
    ) -> None:
        """Rebuild the knowledge base for the configured embedder (ENCLAVE_EMBEDDER__MODEL)
        into a new collection and switch to it when it is complete.

        Chunks are not parsed again: their texts are embedded by the new model, their ids,
        payloads and BM25 vectors are kept. Until the switch, the collection in use keeps
        answering (on a Qdrant server, API processes keep serving it; the embedded engines
        allow one process, so stop `enclave serve` first). Restart API processes with the
        new ENCLAVE_EMBEDDER__MODEL after the switch.
        """
        from backends.container import build_store
        from backends.embedders import SentenceTransformerEmbedder
        from backends.migration import migrate
        from backends.sparse import Bm25Encoder
        from backends.sql.registry import Registry

        settings = inv.settings()
        name = settings.store.collection
        registry = Registry(settings.database_url)
        try:
            current = registry.active_collection(name)
            if drop_previous:
                previous = registry.previous_collection(name)
                if previous is None or previous == current:
                    typer.echo(f"Collection '{name}' has no replaced collection to delete.")
                    return
                old = build_store(settings, previous)
                try:
                    old.drop()
                finally:
                    old.close()
                registry.switch_collection(name, current, None)
                typer.echo(f"Deleted '{previous}', which '{name}' used before the last reindex.")
                return
            source = build_store(settings, current)
            try:
                embedder = SentenceTransformerEmbedder(settings.embedder)
                built_with = source.info().embedder
                if built_with == embedder.name:
                    raise InputError(
                        f"collection '{name}' ('{current}') is already built with "
                        f"{embedder.name!r}: nothing to reindex (set ENCLAVE_EMBEDDER__MODEL "
                        "to the new model first)"
                    )
                target_name = reindexed_name(name, embedder.name)
                target = build_store(settings, target_name)
                try:
                    with Console(stderr=True).status("embedding chunks") as status:
                        report = migrate(
                            source,
                            target,
                            Bm25Encoder(settings.sparse).name,
                            replace=True,  # a half-built one from an interrupted run
                            embedder=embedder,
                            progress=lambda done, total: status.update(
                                f"embedded {done:,} of {total:,} chunks"
                            ),
                        )
                finally:
                    target.close()
            finally:
                source.close()
            registry.switch_collection(name, target_name, current)
        finally:
            registry.close()
        typer.echo(
            f"Reindexed {report.points:,} chunks from {built_with!r} to {embedder.name!r} "
            f"in {report.seconds:.1f} s (index build {report.index_seconds:.1f} s).\n"
            f"Collection '{name}' now uses '{target_name}'. Restart API processes with "
            f"ENCLAVE_EMBEDDER__MODEL={embedder.name}; then `enclave reindex --drop-previous` "
            f"deletes '{current}'."
        )

    @app.command()
    def backup(
        folder: Annotated[Path, typer.Argument(help="New folder to write the backup to.")],
    ) -> None:
        """Back up the knowledge base: every chunk with its vectors and every SQL table
        (documents, API keys, audit log, conversations, jobs) into one folder."""
        from backends.backup import backup as write_backup

        with Console(stderr=True).status("backing up") as status:
            report = write_backup(inv.settings(), folder, progress=status.update)
        typer.echo(
            f"Backed up {report.points:,} chunks of collection '{report.collection}' and "
            f"{sum(report.rows.values()):,} rows of {len(report.rows)} tables to "
            f"{report.folder} in {report.seconds:.1f} s."
        )

    @app.command()
    def restore(
        folder: Annotated[Path, typer.Argument(help="A folder written by `enclave backup`.")],
        replace: Annotated[
            bool,
            typer.Option("--replace", help="Overwrite a store and database that hold data."),
        ] = False,
    ) -> None:
        """Restore a backup into the configured store and database (any engine: a backup
        of Qdrant Edge and SQLite restores into a Qdrant server and PostgreSQL)."""
        from backends.backup import restore as read_backup

        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder: name one written by `enclave backup`")
        with Console(stderr=True).status("restoring") as status:
            report = read_backup(inv.settings(), folder, replace=replace, progress=status.update)
        typer.echo(
            f"Restored {report.points:,} chunks into collection '{report.collection}' and "
            f"{sum(report.rows.values()):,} rows of {len(report.rows)} tables from "
            f"{report.folder} in {report.seconds:.1f} s."
        )
