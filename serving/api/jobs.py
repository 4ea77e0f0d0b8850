"""Ingestion jobs of the API (uploads, server paths): run one at a time in a worker thread,
with progress and per-file results in the jobs table."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.sql.app import AppDatabase, Job
from core.errors import EnclaveError, InputError
from core.settings import Settings
from ingest.discover import source_of
from ingest.pipeline import Ingestor, IngestReport
from serving.api.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestJob:
    """An ingestion job of the API: uploads (named by file name; a file that failed is
    removed from the upload's folder), or with ``folder`` server paths (each file under
    them named by its full path)."""

    job_id: str  # its row in the jobs table
    paths: list[Path]
    groups: list[str] | None  # record these rules first (None: the stored rules apply)
    tags: list[str] | None
    actor: str  # who the rule changes are recorded as
    rejected: list[dict[str, str]] = field(default_factory=list)  # refused before the job
    folder: bool = False


class JobRunner:
    """Runs the API's ingestion jobs, one at a time, in a thread of the API process."""

    def __init__(
        self, settings: Settings, db: AppDatabase, ingestor: Ingestor, metrics: Metrics
    ) -> None:
        self._settings = settings
        self._db = db
        self._ingestor = ingestor
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ingest-job")

    def submit(self, job: IngestJob) -> None:
        """Queue a job (created in the jobs table) for the worker thread."""
        self._pool.submit(self._run, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: IngestJob) -> None:
        """Ingest the job's paths and record per-file results."""
        job_id, paths, rejected = job.job_id, job.paths, job.rejected
        db = self._db
        try:
            db.update_job(job_id, status="running")
            progress = _JobProgress(self._db, job_id, len(rejected))
            report = self._ingestor.run(
                paths, groups=job.groups, tags=job.tags, progress=progress, actor=job.actor
            )
            results = list(rejected) + self._results(paths, report, folder=job.folder)
            m = self._metrics
            for result, count in (
                ("added", report.added),
                ("updated", report.updated),
                ("unchanged", report.unchanged),
                ("deleted", report.deleted),
                ("failed", len(report.failed) + len(rejected)),
            ):
                m.ingest_files.labels(result).inc(count)
            m.ingest_chunks.inc(report.chunks_written)
            db.update_job(
                job_id,
                status="done",
                total_files=len(results),
                done_files=len(results),
                chunks=report.chunks_written,
                results=results,
                warnings=report.warnings,
            )
        except Exception as exc:
            logger.exception("ingestion job %s failed", job_id)
            message = (
                str(exc)
                if isinstance(exc, EnclaveError)
                else f"internal error ({exc.__class__.__name__})"
            )
            db.update_job(job_id, status="failed", error=message)

    def _results(
        self, paths: list[Path], report: IngestReport, *, folder: bool
    ) -> list[dict[str, str]]:
        """Per-file results from the run's report (added, updated, unchanged, deleted or
        failed): uploads named by file name (a failed upload is removed from its folder),
        server paths by full path."""
        failed = {f.source: f.reason for f in report.failed}
        if folder:
            results = [
                {"source": source, "status": status}
                for source, status in sorted(report.files.items())
            ]
            return results + [
                {"source": source, "status": "failed", "reason": reason}
                for source, reason in sorted(failed.items())
            ]
        results = []
        for path in paths:
            source = source_of(path.resolve())
            if source in failed or source not in report.files:
                reason = failed.get(source, "not ingested (see the server log)")
                results.append({"source": path.name, "status": "failed", "reason": reason})
                self._ingestor.discard_upload(path)
            else:
                results.append({"source": path.name, "status": report.files[source]})
        return results


class _JobProgress:
    """Ingestion progress written to the jobs table (at most every half second)."""

    def __init__(self, db: AppDatabase, job_id: str, offset: int) -> None:
        self._db = db
        self._job_id = job_id
        self._offset = offset
        self._files = offset
        self._chunks = 0
        self._last = 0.0

    def start(self, total_files: int) -> None:
        """``total_files``: the files this run processes, after ``offset`` done before it."""
        self._db.update_job(self._job_id, status="running", total_files=self._offset + total_files)

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        self._files += files
        self._chunks += chunks
        now = time.monotonic()
        if now - self._last >= 0.5:
            self._last = now
            self._db.update_job(self._job_id, done_files=self._files, chunks=self._chunks)


def ingest_target(roots: list[Path], raw: str) -> Path:
    """The resolved file or folder ``raw`` names, if it lies inside one of ``roots``
    (links resolved); otherwise an :class:`InputError` that says why."""
    if not roots:
        raise InputError(
            "server-side folder ingestion is off: set ENCLAVE_API__INGEST_ROOTS to a JSON list "
            'of the folders it may read (e.g. ["/srv/docs"]), or upload the files instead'
        )
    allowed = [root.expanduser().resolve() for root in roots]
    if "\x00" in raw:
        raise InputError("the path contains a NUL byte; name the folder or file again")
    try:
        target = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise InputError(f"cannot resolve the path {raw!r}: {exc}") from None
    if not any(target.is_relative_to(root) for root in allowed):
        raise InputError(
            f"the path {raw!r} is outside the folders the server may ingest "
            f"({', '.join(str(r) for r in allowed)}); see ENCLAVE_API__INGEST_ROOTS"
        )
    if not target.exists():
        raise InputError(f"the path {raw!r} does not exist on the server; check the spelling")
    if not (target.is_file() or target.is_dir()):
        raise InputError(f"the path {raw!r} is not a regular file or folder")
    return target


def names(values: list[str] | None, what: str) -> list[str] | None:
    """Group or tag names, stripped; None stays None (the default), none at all is an error."""
    if values is None:
        return None
    names = [v.strip() for v in values if v.strip()]
    if not names:
        raise InputError(f"{what} is empty; give at least one name or leave it out")
    return names


def split_names(value: str | None, what: str) -> list[str] | None:
    """:func:`names` of a comma-separated form field."""
    return None if value is None else names(value.split(","), what)


def job_json(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "total_files": job.total_files,
        "done_files": job.done_files,
        "chunks": job.chunks,
        "results": job.results,
        "error": job.error,
        "warnings": job.warnings,
    }
