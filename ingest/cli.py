"""``enclave ingest`` and ``enclave docs``: the admin's ingestion commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from backends.container import Container
from core.errors import InputError, NotFoundError
from ingest.pipeline import Ingestor, IngestReport, doc_id_for, source_of

EXIT_SOME_FAILED = 1
"""``enclave ingest`` exit code when the job finished but some files failed."""

docs_app = typer.Typer(help="List and delete ingested documents.", no_args_is_help=True)
ContainerFactory = Callable[[], Container]


class RichProgress:
    """Files and chunks/s on stderr while a job runs."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._chunks = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, total_files: int) -> None:
        self._task = self._progress.add_task("ingest", total=total_files, chunks=0, rate="-")

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        if self._task is None:
            return
        self._chunks += chunks
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = f"{self._chunks / elapsed:.0f}" if elapsed > 0 else "-"
        self._progress.update(self._task, advance=files, chunks=self._chunks, rate=rate)


def run_ingest(
    container: Container,
    paths: list[str],
    groups: str | None,
    tags: list[str],
    dry_run: bool,
    as_json: bool,
) -> IngestReport:
    """Run a job with a progress bar on stderr; print the report; return it."""
    group_list = split_groups(groups)
    console = Console(stderr=True)
    with RichProgress(console) as progress:
        report = Ingestor(container).run(
            paths, groups=group_list, tags=tags, dry_run=dry_run, progress=progress
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        _print_report(report)
    return report


def split_groups(groups: str | None) -> list[str] | None:
    """``--groups a,b`` as a list; ``None`` when the option was not given."""
    if groups is None:
        return None
    names = [g.strip() for g in groups.split(",") if g.strip()]
    if not names:
        raise InputError("--groups is empty; give one or more group names, e.g. --groups hr,staff")
    return names


def _print_report(report: IngestReport) -> None:
    out = Console()
    verb = "would be " if report.dry_run else ""
    out.print(
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.deleted} deleted {verb}· {report.chunks_written} chunks written · "
        f"{len(report.failed)} failed · {report.seconds:.1f}s"
    )
    if report.failed:
        table = Table("failed file", "reason", show_lines=False)
        for failure in report.failed:
            table.add_row(failure.source, failure.reason)
        out.print(table)


def register(app: typer.Typer, container_factory: ContainerFactory) -> None:
    """Add ``ingest`` and ``docs`` to the root app."""

    @app.command("ingest")
    def ingest(
        paths: Annotated[list[str], typer.Argument(help="Files and folders to ingest.")],
        groups: Annotated[
            str | None,
            typer.Option(help="Comma-separated groups that may read these documents."),
        ] = None,
        tag: Annotated[
            list[str] | None, typer.Option("--tag", help="A tag for every document (repeatable).")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Ingest files and folders: new files added, changed ones replaced, removed ones deleted.

        Exit code 0 when every file was ingested, 1 when some failed (listed in the report),
        2 when the job could not run.
        """
        container = container_factory()
        try:
            report = run_ingest(container, paths, groups, tag or [], dry_run, as_json)
        finally:
            container.close()
        if report.failed:
            raise typer.Exit(EXIT_SOME_FAILED)

    @docs_app.command("list")
    def docs_list(
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    ) -> None:
        """List ingested documents."""
        container = container_factory()
        try:
            records = container.registry.all()
        finally:
            container.close()
        rows = [r.as_dict() for r in records]
        if as_json:
            typer.echo(json.dumps(rows, ensure_ascii=False))
            return
        table = Table("doc_id", "title", "source", "chunks", "groups", "ingested_at")
        for row in rows:
            table.add_row(
                row["doc_id"],
                row["title"],
                row["source"],
                str(row["chunks"]),
                ",".join(row["groups"]),
                row["ingested_at"],
            )
        Console().print(table)

    @docs_app.command("delete")
    def docs_delete(
        doc_id: Annotated[str | None, typer.Argument(help="The document's id.")] = None,
        source: Annotated[
            Path | None, typer.Option("--source", help="The document's file path instead.")
        ] = None,
    ) -> None:
        """Delete a document and all its chunks."""
        if (doc_id is None) == (source is None):
            raise InputError("name the document by DOC_ID or by --source PATH (one of them)")
        container = container_factory()
        try:
            if source is not None:
                record = container.registry.get(
                    doc_id_for(source_of(source.expanduser().resolve()))
                )
                what = str(source)
            else:
                record = container.registry.get(str(doc_id))
                what = str(doc_id)
            if record is None:
                raise NotFoundError(
                    f"no ingested document {what}; `enclave docs list` shows what is there"
                )
            Ingestor(container).delete(record.document.doc_id)
        finally:
            container.close()
        typer.echo(f"deleted {record.document.doc_id} ({record.document.source})", err=True)

    app.add_typer(docs_app, name="docs")
