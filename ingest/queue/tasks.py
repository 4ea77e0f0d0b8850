"""The tasks a worker runs: parse, chunk and embed files then write them in the
store's turn; apply deletions and group changes; merge the reports and build the
index once per job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, get_current_job
from rq.serializers import JSONSerializer

from core.errors import EnclaveError, QueueError
from core.protocols import Embedder, VectorStore
from core.settings import Settings
from core.types import Document
from ingest.discover import Failure
from ingest.pipeline import Ingestor, IngestReport

if TYPE_CHECKING:
    pass

from ingest.queue.connection import Keys, hgetall
from ingest.queue.serial import document_from, merge, report_from_dict
from ingest.queue.settings import KEEP_S, STORE_WAIT_S, TASK_RETRIES, TaskTimedOut
from ingest.queue.store_lock import StoreAccess, worker_container

logger = logging.getLogger(__name__)

# -- the worker side -------------------------------------------------------------------------


# A task's result, atomically: the first result of a task (not a repeat after a retry)
# adds its files and chunks to the job's progress counters.
_RECORD_RESULT = """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1])
if new == 1 then
  redis.call('HINCRBY', KEYS[3], 'done_files', ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'done_chunks', ARGV[4])
end
return new
"""


class TaskRunner:
    """What a worker process keeps between tasks: the settings, the loaded embedder,
    the registry, and access to the store."""

    def __init__(
        self,
        settings: Settings,
        connection: Redis,
        *,
        name: str = "",
        store_wait_s: float = STORE_WAIT_S,
        lock_ttl_s: float = 30,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.name = name
        self.container = worker_container(settings, embedder)
        self.ingestor = Ingestor(self.container)
        self.access = StoreAccess(settings, connection, wait_s=store_wait_s, lock_ttl_s=lock_ttl_s)
        self._checked: set[str] = set()  # server collections created or checked

    def warm_up(self) -> None:
        """Load the embedding model now rather than in the first task."""
        self.container.collection_spec()

    @contextlib.contextmanager
    def writing(self) -> Iterator[VectorStore]:
        """The write phase of a task: the store, held for the ``with`` block (and passed
        to the ingestor's writes; the container has none of its own)."""
        collection = self.container.registry.active_collection(self.settings.store.collection)
        with self.access.session(collection) as store:
            if not self.access.embedded and collection not in self._checked:
                with self.access.lock():  # two workers must not create it together
                    store.ensure_collection(self.container.collection_spec(collection))
                self._checked.add(collection)
            yield store

    def close(self) -> None:
        self.container.close()
        self.access.close()

    # -- tasks ----------------------------------------------------------------------------
    def ingest_files(
        self, job_id: str, task_id: str, files: list[dict[str, Any]]
    ) -> dict[str, Any]:
        keys = Keys.of(self.settings.queue.name, job_id)
        items = [(Path(f["path"]), document_from(f["document"]), f["kind"]) for f in files]
        logger.info("task %s started on %s: %d files", task_id, self._worker(), len(items))
        report = IngestReport()
        counts = [0, 0]

        def on_file(chunks: int) -> None:
            counts[0] += 1
            counts[1] += chunks
            self.connection.hset(keys.progress, task_id, f"{counts[0]} {counts[1]}")

        error: str | None = None
        try:
            prepared = self.ingestor.prepare(items, report, on_file)
            if prepared.items:
                waited = time.perf_counter()
                with self.writing() as store:
                    report.stage_seconds["store_wait"] = time.perf_counter() - waited
                    self.ingestor.commit(prepared, report, store=store)
        except TaskTimedOut:
            job = get_current_job()
            limit = f"{job.timeout} s" if job is not None and job.timeout else "its time limit"
            self._unwritten(
                items,
                report,
                f"its task ran out of time ({limit}) before the file was written; run "
                "`enclave ingest` again, or raise `--task-timeout`",
            )
        except EnclaveError as exc:  # the store or the model failed: the job cannot go on
            error = str(exc)
            self._unwritten(items, report, error)
        return self._done(keys, task_id, report, len(items), error)

    def apply_changes(
        self, job_id: str, task_id: str, access: list[dict[str, Any]], deletions: list[str]
    ) -> dict[str, Any]:
        keys = Keys.of(self.settings.queue.name, job_id)
        logger.info(
            "task %s started on %s: %d deletions, %d group changes",
            task_id,
            self._worker(),
            len(deletions),
            len(access),
        )
        report = IngestReport()
        error: str | None = None
        try:
            with self.writing() as store:
                documents = [document_from(raw) for raw in access]
                self.ingestor.apply_changes(documents, deletions, report, store=store)
        except EnclaveError as exc:
            error = str(exc)
        return self._done(keys, task_id, report, 0, error)

    def finish_job(self, job_id: str) -> dict[str, Any]:
        keys = Keys.of(self.settings.queue.name, job_id)
        record = hgetall(self.connection, keys.record)
        report = report_from_dict(json.loads(record["plan"]))
        results = hgetall(self.connection, keys.results)
        workers: Counter[str] = Counter()
        error: str | None = None
        for task in json.loads(record["tasks"]):
            raw = results.get(task["id"])
            if raw is None:  # RQ gave up on it: its worker died every time, or it raised
                reason = self._lost(task["id"])
                report.failed += [Failure(source, reason) for source in task["sources"]]
                continue
            result = json.loads(raw)
            merge(report, report_from_dict(result))
            workers[result["worker"]] += 1
            error = error or result.get("error")
        if report.chunks_written or report.deleted:
            started = time.perf_counter()
            try:
                with self.writing() as store:
                    store.optimize()  # once per job, after the last write
            except EnclaveError as exc:
                error = error or str(exc)
            report.stage_seconds["index"] = time.perf_counter() - started
        report.seconds = time.time() - float(record["created_at"])
        summary = report.as_dict()
        with self.connection.pipeline() as pipe:
            pipe.hset(
                keys.record,
                mapping={
                    "status": "failed" if error else "done",
                    "report": json.dumps(summary, ensure_ascii=False),
                    "workers": json.dumps(dict(workers)),
                    "error": error or "",
                    "finished_at": repr(time.time()),
                },
            )
            pipe.delete(keys.progress)
            for key in (keys.record, keys.results):
                pipe.expire(key, KEEP_S)
            pipe.execute()
        logger.info("job %s finished on %s: %s", job_id, self._worker(), summary)
        return summary

    # -- helpers ----------------------------------------------------------------------------
    def _worker(self) -> str:
        job = get_current_job()
        return (job.worker_name if job is not None else None) or self.name or "?"

    def _done(
        self, keys: Keys, task_id: str, report: IngestReport, files: int, error: str | None
    ) -> dict[str, Any]:
        result = {**report.as_dict(), "files": files, "worker": self._worker(), "error": error}
        self.connection.eval(
            _RECORD_RESULT,
            3,
            keys.results,
            keys.progress,
            keys.record,
            task_id,
            json.dumps(result, ensure_ascii=False),
            files,
            report.chunks_written,
        )
        logger.info(
            "task %s done on %s: %d added, %d updated, %d deleted, %d chunks, %d failed",
            task_id,
            result["worker"],
            report.added,
            report.updated,
            report.deleted,
            report.chunks_written,
            len(report.failed),
        )
        return result

    def _unwritten(
        self,
        items: Sequence[tuple[Path, Document, str]],
        report: IngestReport,
        reason: str,
    ) -> None:
        """Report the task's files that are neither failed nor recorded as failed."""
        settled = {f.source for f in report.failed}
        for _, document, _ in items:
            if document.source in settled:
                continue
            try:
                record = self.container.registry.get(document.doc_id)
            except EnclaveError:
                record = None
            if record is None or record.document.content_hash != document.content_hash:
                report.failed.append(Failure(document.source, reason))

    def _lost(self, task_id: str) -> str:
        try:
            job = Job.fetch(task_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            return "its task's record expired before the job ended; run `enclave ingest` again"
        return f"its task failed: {failure_text(job)}; run `enclave ingest` again"


def failure_text(job: Job) -> str:
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    if "AbandonedJobError" in text:
        return (
            f"the worker running it stopped before it ended (killed or crashed), "
            f"{TASK_RETRIES + 1} times"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"RQ reports it {job.get_status()}"


class _RunnerHolder:
    """The worker process's :class:`TaskRunner` (one per process; tasks run in it)."""

    def __init__(self) -> None:
        self._runner: TaskRunner | None = None
        self._lock = threading.Lock()

    def install(self, runner: TaskRunner | None) -> None:
        with self._lock:
            self._runner = runner

    def get(self) -> TaskRunner:
        with self._lock:
            if self._runner is None:  # a plain `rq worker`: build one from the environment
                from core.settings import get_settings

                job = get_current_job()
                if job is None:
                    raise QueueError("ingestion tasks run inside a worker (`enclave worker`)")
                self._runner = TaskRunner(get_settings(), job.connection)
            return self._runner


_runner = _RunnerHolder()
install_runner = _runner.install


# The task functions RQ calls (by name: keep them at module level).
def ingest_files(job_id: str, task_id: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Parse, chunk and embed some files of a job, then write them."""
    return _runner.get().ingest_files(job_id, task_id, files)


def apply_changes(
    job_id: str, task_id: str, access: list[dict[str, Any]], deletions: list[str]
) -> dict[str, Any]:
    """Delete the job's removed documents and apply its group and tag changes."""
    return _runner.get().apply_changes(job_id, task_id, access, deletions)


def finish_job(job_id: str) -> dict[str, Any]:
    """Merge the tasks' reports, build the index once, and end the job."""
    return _runner.get().finish_job(job_id)


TASKS = frozenset(f"{__name__}.{f.__name__}" for f in (ingest_files, apply_changes, finish_job))
"""The only functions a worker runs (RQ names a task's function in its Redis record)."""
