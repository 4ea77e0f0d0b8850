"""``enclave ingest`` and ``enclave docs``: the admin's ingestion commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from core.errors import InputError, NotFoundError, QueueError
from core.settings import Settings
from core.types import group_names
from ingest.discover import doc_id_for, source_of
from ingest.pipeline import Ingestor, IngestReport
from serving.cli.context import Invocation

if TYPE_CHECKING:
    from redis import Redis

EXIT_SOME_FAILED = 1
"""``enclave ingest`` exit code when the job finished but some files failed."""
EXIT_INTERRUPTED = 130
TASK_TIMEOUT_S = 3600  # ingest.queue.TASK_TIMEOUT_S (not imported: rq loads only when queued)


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
    tags: list[str] | None,
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


def run_queued(
    settings: Settings,
    paths: list[str],
    groups: str | None,
    tags: list[str] | None,
    *,
    dry_run: bool,
    as_json: bool,
    no_wait: bool,
    task_timeout_s: int,
) -> IngestReport | None:
    """``enclave ingest`` with ENCLAVE_QUEUE__URL: plan here, enqueue tasks for
    ``enclave worker`` processes, then wait and print the report (None with
    ``no_wait``: the job id is printed instead)."""
    from ingest import queue

    group_list = split_groups(groups)
    connection = queue.connect(settings)
    if dry_run:
        report = queue.dry_run(settings, connection, paths, group_list, tags)
        _print(report.as_dict(), report, as_json)
        return report
    submitted = queue.submit(
        settings, connection, paths, group_list, tags, task_timeout_s=task_timeout_s
    )
    if no_wait:
        if as_json:
            row = {"job_id": submitted.job_id, "files": submitted.files, "tasks": submitted.tasks}
            typer.echo(json.dumps(row))
        else:
            typer.echo(submitted.job_id)
        return None
    typer.echo(
        f"job {submitted.job_id}: {submitted.files} files to process in {submitted.tasks} "
        f"tasks on queue {settings.queue.name}",
        err=True,
    )
    return wait_queued(settings, connection, submitted.job_id, as_json)


def wait_queued(settings: Settings, connection: Redis, job_id: str, as_json: bool) -> IngestReport:
    """Wait for a queued job with a progress bar on stderr; print its report; return it.
    A job-level error (the store or the model failed) is raised after the report."""
    from ingest import queue

    console = Console(stderr=True)
    try:
        with RichProgress(console) as progress:
            outcome = queue.wait(
                settings,
                connection,
                job_id,
                progress=progress,
                on_note=lambda note: console.print(note, highlight=False),
            )
    except KeyboardInterrupt:
        typer.echo(
            f"stopped waiting; the job goes on in the workers (`enclave job {job_id}`)", err=True
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _print(outcome.as_dict(), outcome.report, as_json)
    if outcome.error:
        raise QueueError(f"ingestion job {job_id} could not finish: {outcome.error}")
    return outcome.report


def _print(row: dict[str, object], report: IngestReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(row, ensure_ascii=False))
    else:
        _print_report(report)


def split_groups(groups: str | None) -> list[str] | None:
    """``--groups a,b`` as checked group names; ``None`` when the option was not given."""
    if groups is None:
        return None
    names = group_names([g for g in groups.split(",") if g.strip()])
    if not names:
        raise InputError("--groups is empty; give one or more group names, e.g. --groups hr,staff")
    return list(names)


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
    for warning in report.warnings:
        Console(stderr=True).print(f"warning: {warning}", highlight=False)


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add ``ingest``, ``job`` and ``docs`` to the root app (``ingest`` uses the queue
    when the settings name ENCLAVE_QUEUE__URL)."""
    container_factory, settings_factory = inv.container, inv.settings
    docs_app = typer.Typer(help="List and delete ingested documents.", no_args_is_help=True)

    @app.command("ingest")
    def ingest(
        paths: Annotated[list[str], typer.Argument(help="Files and folders to ingest.")],
        groups: Annotated[
            str | None,
            typer.Option(
                help="Comma-separated groups that may read these documents: recorded as the "
                "access rule of each path (later runs without --groups keep it)."
            ),
        ] = None,
        tag: Annotated[
            list[str] | None,
            typer.Option(
                "--tag",
                help="A tag for every document (repeatable); without it, documents keep theirs.",
            ),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        no_wait: Annotated[
            bool,
            typer.Option(
                "--no-wait",
                help="With the queue (ENCLAVE_QUEUE__URL): print the job id and return; "
                "`enclave job ID` shows the job later.",
            ),
        ] = False,
        task_timeout: Annotated[
            int,
            typer.Option(
                "--task-timeout",
                min=1,
                help="With the queue: seconds one task (ENCLAVE_QUEUE__FILES_PER_TASK files) "
                "may run; its unwritten files are reported as failed after that.",
            ),
        ] = TASK_TIMEOUT_S,
    ) -> None:
        """Ingest files and folders: new files added, changed ones replaced, removed ones deleted.

        With ENCLAVE_QUEUE__URL set, the job is planned here and run by `enclave worker`
        processes; the report and exit codes are the same.

        Exit code 0 when every file was ingested, 1 when some failed (listed in the report),
        2 when the job could not run.
        """
        settings = settings_factory()
        if settings.queue.url is not None:
            queued = run_queued(
                settings,
                paths,
                groups,
                tag,
                dry_run=dry_run,
                as_json=as_json,
                no_wait=no_wait,
                task_timeout_s=task_timeout,
            )
            if queued is not None and queued.failed:
                raise typer.Exit(EXIT_SOME_FAILED)
            return
        if no_wait:
            raise InputError("--no-wait needs the ingestion queue: set ENCLAVE_QUEUE__URL")
        container = container_factory()
        try:
            report = run_ingest(container, paths, groups, tag, dry_run, as_json)
        finally:
            container.close()
        if report.failed:
            raise typer.Exit(EXIT_SOME_FAILED)

    @app.command("job")
    def job(
        job_id: Annotated[str, typer.Argument(help="The id `enclave ingest --no-wait` printed.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        no_wait: Annotated[
            bool, typer.Option("--no-wait", help="Show the progress now instead of waiting.")
        ] = False,
    ) -> None:
        """Wait for a queued ingestion job (ENCLAVE_QUEUE__URL) and print its report, with
        `enclave ingest`'s exit codes."""
        from ingest import queue

        settings = settings_factory()
        connection = queue.connect(settings)
        if no_wait:
            with queue.redis_errors(queue.queue_url(settings)):
                state = queue.status(connection, settings.queue.name, job_id)
            if state["status"] in ("done", "failed"):
                outcome = queue.outcome(connection, settings.queue.name, job_id)
                state = {**state, **outcome.as_dict(), "error": outcome.error}
            if as_json:
                typer.echo(json.dumps(state, ensure_ascii=False))
            else:
                typer.echo(
                    f"{state['status']}: {state['done_files']} of {state['total_files']} files, "
                    f"{state['chunks']} chunks"
                )
            return
        report = wait_queued(settings, connection, job_id, as_json)
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
