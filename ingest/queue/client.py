"""The client side of a queued job: plan it (no model, no store writes), enqueue its
tasks, wait for it and read its report.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from core.errors import QueueError
from core.settings import Settings
from ingest.pipeline import Ingestor, IngestReport, Plan, ProgressListener

if TYPE_CHECKING:
    pass

from ingest.queue.connection import Keys, hgetall, queue_url, redis_errors
from ingest.queue.serial import document_dict, report_from_dict
from ingest.queue.settings import KEEP_S, TASK_RETRIES, TASK_TIMEOUT_S
from ingest.queue.store_lock import StoreAccess, worker_container
from ingest.queue.tasks import apply_changes, failure_text, finish_job, ingest_files

logger = logging.getLogger(__name__)

_POLL_S = 0.5
_CLEANUP_S = 5.0  # the waiting client looks for abandoned tasks this often
_NO_WORKER_HINT_S = 10.0
_CLIENT_STORE_WAIT_S = 30.0  # planning looks at an embedded store only to count its points

# -- the client: plan, enqueue, wait -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submitted:
    """A job handed to the queue."""

    job_id: str
    files: int  # files the tasks parse and embed
    tasks: int  # tasks enqueued (0: nothing to do, the job is already done)


@dataclass(slots=True)
class Outcome:
    """A finished job: its report, which workers ran its tasks, and a job-level error
    (the job could not go on: the store or model failed) if any."""

    job_id: str
    report: IngestReport
    workers: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``enclave ingest --json`` in queue mode: the in-process report plus the job."""
        return {**self.report.as_dict(), "job_id": self.job_id, "workers": self.workers}


def _plan(
    settings: Settings,
    connection: Redis,
    paths: Sequence[str | Path],
    groups: Sequence[str] | None,
    tags: Sequence[str] | None,
    *,
    record: bool,
) -> Plan:
    container = worker_container(settings)
    try:
        trust = True
        if container.registry.all():  # the store emptied behind the registry's back?
            access = StoreAccess(settings, connection, wait_s=_CLIENT_STORE_WAIT_S)
            try:
                with access.session(container.collection) as store:
                    trust = store.count() > 0
            finally:
                access.close()
        return Ingestor(container).plan(
            paths, groups=groups, tags=tags, trust_registry=trust, record=record
        )
    finally:
        container.close()


def dry_run(
    settings: Settings,
    connection: Redis,
    paths: Sequence[str | Path],
    groups: Sequence[str] | None,
    tags: Sequence[str] | None,
) -> IngestReport:
    """What a job would do (``--dry-run``): planned here, nothing enqueued or recorded."""
    with redis_errors(queue_url(settings)):
        plan = _plan(settings, connection, paths, groups, tags, record=False)
    report = plan.count()
    report.dry_run = True
    report.seconds = report.stage_seconds["scan"]
    return report


def submit(
    settings: Settings,
    connection: Redis,
    paths: Sequence[str | Path],
    groups: Sequence[str] | None,
    tags: Sequence[str] | None,
    *,
    task_timeout_s: int = TASK_TIMEOUT_S,
) -> Submitted:
    """Plan a job, record it, and enqueue its tasks (``ENCLAVE_QUEUE__FILES_PER_TASK``
    files each, one for deletions and group changes, and the final task)."""
    url = queue_url(settings)
    created = time.time()
    with redis_errors(url):
        plan = _plan(settings, connection, paths, groups, tags, record=True)
    job_id = uuid.uuid4().hex
    name = settings.queue.name
    keys = Keys.of(name, job_id)
    size = settings.queue.files_per_task
    tasks: list[dict[str, Any]] = []
    calls: list[Any] = []
    for number, start in enumerate(range(0, len(plan.files), size), 1):
        part = plan.files[start : start + size]
        task_id = f"{job_id}-t{number}"
        tasks.append({"id": task_id, "sources": [p.document.source for p in part]})
        payload = [
            {"path": str(p.path), "kind": p.kind, "document": document_dict(p.document)}
            for p in part
        ]
        calls.append(
            _call(
                ingest_files,
                (job_id, task_id, payload),
                task_id,
                f"ingest job {job_id}: task {number} ({len(part)} files)",
                task_timeout_s,
            )
        )
    if plan.access or plan.deletions:
        task_id = f"{job_id}-changes"
        tasks.append({"id": task_id, "sources": []})
        changes = (job_id, task_id, [document_dict(d) for d in plan.access], plan.deletions)
        calls.append(
            _call(
                apply_changes,
                changes,
                task_id,
                f"ingest job {job_id}: {len(plan.deletions)} deletions, "
                f"{len(plan.access)} group changes",
                task_timeout_s,
            )
        )
    record: dict[str, str] = {
        "status": "queued" if tasks else "done",
        "created_at": repr(created),
        "total_files": str(len(plan.files)),
        "plan": json.dumps(plan.report.as_dict(), ensure_ascii=False),
        "tasks": json.dumps(tasks, ensure_ascii=False),
        "finish_id": f"{job_id}-finish",
    }
    if not tasks:  # nothing to do: the plan is the report
        plan.report.seconds = plan.report.stage_seconds["scan"]
        record["report"] = json.dumps(plan.report.as_dict(), ensure_ascii=False)
        record["workers"] = "{}"
    with redis_errors(url):
        with connection.pipeline() as pipe:
            pipe.hset(keys.record, mapping=record)  # type: ignore[arg-type]
            if not tasks:
                pipe.expire(keys.record, KEEP_S)
            pipe.execute()
        if tasks:
            queue = task_queue(name, connection)
            jobs = queue.enqueue_many(calls)
            last = _call(
                finish_job,
                (job_id,),
                record["finish_id"],
                f"ingest job {job_id}: report and index",
                task_timeout_s,
                depends_on=Dependency(jobs=list(jobs), allow_failure=True),
            )
            queue.enqueue_many([last])
    logger.info(
        "job %s: %d files in %d tasks on queue %s", job_id, len(plan.files), len(tasks), name
    )
    return Submitted(job_id, len(plan.files), len(tasks))


def task_queue(name: str, connection: Redis) -> Queue:
    """The RQ queue of ingestion tasks. Tasks travel as JSON, never pickled: whoever can
    write to Redis must not be able to make a worker run code (and a worker runs only the
    task functions of this module, :data:`TASKS`)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def _call(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    job_id: str,
    description: str,
    timeout: int,
    depends_on: Dependency | None = None,
) -> Any:
    return Queue.prepare_data(
        func,
        args=args,
        job_id=job_id,
        description=description,
        timeout=timeout,
        result_ttl=KEEP_S,
        failure_ttl=KEEP_S,
        retry=Retry(max=TASK_RETRIES),
        depends_on=depends_on,
    )


def status(connection: Redis, queue_name: str, job_id: str) -> dict[str, Any]:
    """A job's status and progress: ``status`` (queued, running, done, failed),
    ``total_files``, ``done_files``, ``chunks``."""
    keys = Keys.of(queue_name, job_id)
    record = hgetall(connection, keys.record)
    if not record:
        raise QueueError(
            f"no ingestion job {job_id} on queue {queue_name} (unknown, or older than "
            f"{KEEP_S // 86400} days)"
        )
    files = int(record.get("done_files", 0))  # tasks that ended (counted once each)
    chunks = int(record.get("done_chunks", 0))
    for raw in hgetall(connection, keys.progress).values():  # tasks running now
        done, embedded = raw.split()
        files += int(done)
        chunks += int(embedded)
    state = record["status"]
    if state == "queued" and files:
        state = "running"
    return {
        "job_id": job_id,
        "status": state,
        "total_files": int(record["total_files"]),
        "done_files": files,
        "chunks": chunks,
    }


def wait(
    settings: Settings,
    connection: Redis,
    job_id: str,
    *,
    progress: ProgressListener | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Outcome:
    """Wait for a job to end and return its outcome. Meanwhile report progress, and
    hand tasks whose worker died back to the queue (RQ's abandoned-job handling)."""
    url = queue_url(settings)
    name = settings.queue.name
    keys = Keys.of(name, job_id)
    with redis_errors(url):
        queue = task_queue(name, connection)
        started = last_cleanup = time.monotonic()
        seen_files = seen_chunks = 0
        hinted = False
        first = status(connection, name, job_id)
        if progress is not None:
            progress.start(first["total_files"])
        while True:
            record = hgetall(connection, keys.record)
            if record.get("status") in ("done", "failed"):
                break
            if time.monotonic() - last_cleanup >= _CLEANUP_S:
                last_cleanup = time.monotonic()
                StartedJobRegistry(queue=queue).cleanup()
                _check_finish(connection, keys, record)
            now = status(connection, name, job_id)
            if progress is not None:
                progress.advance(
                    files=max(now["done_files"] - seen_files, 0),
                    chunks=max(now["chunks"] - seen_chunks, 0),
                )
                seen_files = max(seen_files, now["done_files"])
                seen_chunks = max(seen_chunks, now["chunks"])
            if (
                not hinted
                and on_note is not None
                and time.monotonic() - started > _NO_WORKER_HINT_S
                and _workers(queue) == 0
            ):
                hinted = True
                on_note(
                    f"no `enclave worker` is running on queue {name}; the job waits for one "
                    f"(Ctrl-C leaves it queued: `enclave job {job_id}` shows it later)"
                )
            time.sleep(_POLL_S)
        return outcome(connection, name, job_id)


def outcome(connection: Redis, queue_name: str, job_id: str) -> Outcome:
    """The outcome of a finished job."""
    record = hgetall(connection, Keys.of(queue_name, job_id).record)
    if "report" not in record:
        raise QueueError(f"ingestion job {job_id} has not finished")
    return Outcome(
        job_id,
        report_from_dict(json.loads(record["report"])),
        workers=json.loads(record.get("workers") or "{}"),
        error=record.get("error") or None,
    )


def _workers(queue: Queue) -> int:
    from rq import Worker

    return int(Worker.count(queue=queue))


def _check_finish(connection: Redis, keys: Keys, record: dict[str, str]) -> None:
    """The final task failed for good (it raised every time): end the job with its error."""
    try:
        finish = Job.fetch(record["finish_id"], connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return
    if finish.get_status() != JobStatus.FAILED:
        return
    report = report_from_dict(json.loads(record["plan"]))
    error = f"the job's final task failed: {failure_text(finish)}"
    connection.hset(
        keys.record,
        mapping={
            "status": "failed",
            "error": error,
            "report": json.dumps(report.as_dict(), ensure_ascii=False),
            "workers": "{}",
        },
    )
