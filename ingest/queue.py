"""Ingestion jobs on worker processes, through a Redis queue (RQ).

With ``ENCLAVE_QUEUE__URL`` set, ``enclave ingest`` plans a job and ``enclave worker``
processes run it::

    enclave ingest (the client)                     enclave worker (any number)
      plan: find files, hash them, diff with the      take a task from the queue
      registry (no store writes, no model)            parse, chunk, embed   (no store)
      record the job in Redis                         hold the store: upsert, drop old
      enqueue tasks of FILES_PER_TASK files   ──────▶   versions, record in the registry
      + one task for deletions and group changes      release the store (embedded)
      + a final task that depends on all of them ───▶ merge the reports, optimize() once
      wait: progress, then the report

Every task is idempotent: chunk ids derive from (doc id, content hash, index), so a
task run again (its worker was killed, RQ retried it) writes the same points and the
same registry rows. One bad file is reported in ``failed`` and never fails its task; a
task that runs out of time reports its unwritten files as failed; a task whose worker
died is retried (RQ's abandoned-job handling, driven by this module's heartbeats) and,
when its retries run out, its files are reported as failed. The final task runs once,
after the last task ended however it ended (an RQ dependency that allows failures), so
``optimize()`` runs once per job whichever worker finishes last.

Embedded stores (Qdrant Edge, qdrant-client's local mode) belong to one process at a
time: a worker opens one only for the write phase of a task, under a Redis lock shared
by the queue's workers, and closes it after, so workers parse and embed in parallel
and write in turn. A Qdrant server (``ENCLAVE_STORE__URL``) is opened once and kept.

Errors::

    EnclaveError
    └── QueueError    the Redis queue cannot be reached or used, or a job is unknown
    BaseException
    └── TaskTimedOut  a task ran past its time limit (raised and caught inside the task)

The Redis URL may hold a password: nothing here logs or prints it (:func:`display_url`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import redis
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Dependency, Job, JobStatus, get_current_job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.worker import WorkerStatus

from backends.container import NO_STORE, Container, build_container, build_store
from core.errors import EnclaveError, QueueError, StoreLockedError
from core.protocols import Embedder, VectorStore
from core.settings import Settings
from core.types import Document
from ingest.pipeline import Failure, Ingestor, IngestReport, Plan, ProgressListener

if TYPE_CHECKING:
    from rq.executions import Execution

logger = logging.getLogger(__name__)

KEEP_S = 7 * 24 * 3600
"""How long job records (and RQ's task records) are kept after a job ends."""
TASK_TIMEOUT_S = 3600
"""Default longest run of one task (``enclave ingest --task-timeout``)."""
TASK_RETRIES = 2
"""Times a task whose worker died (or that raised unexpectedly) is run again."""
STORE_WAIT_S = 600.0
"""Default longest wait of a task for the embedded store (``enclave worker --store-wait``)."""
HEARTBEAT_S = 15.0
"""Default interval of a busy worker's heartbeats (``enclave worker --heartbeat``)."""

_POLL_S = 0.5
_CLEANUP_S = 5.0  # the waiting client looks for abandoned tasks this often
_NO_WORKER_HINT_S = 10.0
_CLIENT_STORE_WAIT_S = 30.0  # planning looks at an embedded store only to count its points


class TaskTimedOut(BaseException):
    """A task ran past its time limit. A ``BaseException`` like ``KeyboardInterrupt``:
    the ``except Exception`` that keeps one bad file from stopping a job must not
    swallow it (the rest of the task would then run without a limit)."""


def heartbeat_ttl(heartbeat_s: float) -> int:
    """Seconds after a busy worker's last heartbeat before its task counts as abandoned
    (and a store lock it holds expires)."""
    return int(3 * heartbeat_s + 5)


# -- Redis ---------------------------------------------------------------------------------


def display_url(url: str) -> str:
    """The Redis URL without user name and password, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "the configured Redis URL"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{host}{port}{parts.path or ''}"


def queue_url(settings: Settings) -> str:
    """``ENCLAVE_QUEUE__URL``, or a clear error when it is unset."""
    if settings.queue.url is None:
        raise QueueError(
            "no ingestion queue is configured: set ENCLAVE_QUEUE__URL (e.g. redis://redis:6379/0)"
        )
    return settings.queue.url.get_secret_value()


def connect(settings: Settings) -> Redis:
    """A checked connection to the queue's Redis (``ENCLAVE_QUEUE__URL``)."""
    url = queue_url(settings)
    with redis_errors(url):
        connection = Redis.from_url(url, health_check_interval=30)
        connection.ping()
    return connection


@contextlib.contextmanager
def redis_errors(url: str) -> Iterator[None]:
    """Turn Redis' errors into :class:`QueueError` (password never included)."""
    try:
        yield
    except (redis.RedisError, ValueError) as exc:
        secret = urlsplit(url).password if "://" in url else None
        detail = f"{exc.__class__.__name__}: {exc}"
        if secret:
            detail = detail.replace(secret, "***")
        raise QueueError(
            f"the ingestion queue at {display_url(url)} cannot be used ({detail}); check "
            "ENCLAVE_QUEUE__URL and that Redis is running"
        ) from exc


@dataclass(frozen=True, slots=True)
class _Keys:
    """Where a job lives in Redis."""

    record: str  # hash: status, plan, tasks, report, ...
    results: str  # hash: task id -> the task's report (JSON)
    progress: str  # hash: task id -> "files chunks" while it runs

    @classmethod
    def of(cls, queue_name: str, job_id: str) -> _Keys:
        base = f"enclave:ingest:{queue_name}:{job_id}"
        return cls(base, f"{base}:results", f"{base}:progress")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _hgetall(connection: Redis, key: str) -> dict[str, str]:
    raw = cast(dict[bytes, bytes], connection.hgetall(key))
    return {_text(k): _text(v) for k, v in raw.items()}


# -- the store, for processes that write only part of the time -------------------------------


class StoreAccess:
    """The vector store for a process that writes only part of the time.

    A Qdrant server is opened once per collection and kept. An embedded engine belongs
    to one process at a time, so each :meth:`session` takes a Redis lock shared by the
    queue's workers (it expires ``lock_ttl_s`` after its holder dies), opens the store,
    and closes it at the end; a store held by a process outside the queue (``enclave
    serve``) is retried. Both waits together last at most ``wait_s``, then
    :class:`StoreLockedError` says what to do.
    """

    def __init__(
        self, settings: Settings, connection: Redis, *, wait_s: float, lock_ttl_s: float = 30
    ) -> None:
        self._settings = settings
        self._connection = connection
        self._wait_s = wait_s
        self._lock_ttl_s = max(lock_ttl_s, 3.0)
        self._server = bool(settings.store.url)
        self._stores: dict[str, VectorStore] = {}
        where = settings.store.url or str(settings.store_path.resolve())
        self._location = where if not self._server else "the Qdrant server"
        digest = hashlib.sha256(f"{where}|{settings.store.engine}".encode()).hexdigest()[:16]
        self._lock_name = f"enclave:store-lock:{digest}"

    @property
    def embedded(self) -> bool:
        """Whether the store is an embedded engine (opened per write phase)."""
        return not self._server

    @contextlib.contextmanager
    def session(self, collection: str) -> Iterator[VectorStore]:
        """The store, held for the ``with`` block."""
        if self._server:
            store = self._stores.get(collection)
            if store is None:
                store = self._stores[collection] = build_store(self._settings, collection)
            yield store
            return
        deadline = time.monotonic() + self._wait_s
        with self.lock(deadline):
            store = self._open(collection, deadline)
            try:
                yield store
            finally:
                store.close()

    @contextlib.contextmanager
    def lock(self, deadline: float | None = None) -> Iterator[None]:
        """The queue's store lock, for the ``with`` block (kept alive by a thread)."""
        limit = deadline if deadline is not None else time.monotonic() + self._wait_s
        lock = self._connection.lock(
            self._lock_name, timeout=self._lock_ttl_s, sleep=0.05, thread_local=False
        )
        remaining = max(limit - time.monotonic(), 0.01)
        if not lock.acquire(blocking=True, blocking_timeout=remaining):
            raise StoreLockedError(
                f"the embedded store at {self._location} stayed busy for {self._wait_s:g} s: "
                "other Enclave workers were writing to it. Raise `enclave worker --store-wait`, "
                "or use a Qdrant server (ENCLAVE_STORE__URL) so that workers write in parallel"
            )
        stop = threading.Event()
        keeper = threading.Thread(
            target=_keep_lock, args=(lock, self._lock_ttl_s / 3, stop), daemon=True
        )
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            with contextlib.suppress(redis.exceptions.LockError):
                lock.release()

    def _open(self, collection: str, deadline: float) -> VectorStore:
        pause = 0.1
        while True:
            try:
                return build_store(self._settings, collection)
            except StoreLockedError as exc:
                if time.monotonic() + pause > deadline:
                    raise StoreLockedError(
                        f"the embedded store at {self._location} stayed in use by another "
                        f"Enclave process for {self._wait_s:g} s (`enclave serve` or an "
                        "in-process `enclave ingest` holds it while it runs). Stop it, or use "
                        "a Qdrant server (ENCLAVE_STORE__URL) for workers and the API together"
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def _keep_lock(lock: Any, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            lock.reacquire()
        except redis.RedisError:
            logger.warning("could not extend the store lock; another worker may take it")
            return


def _container(settings: Settings, embedder: Embedder | None = None) -> Container:
    """A container whose store is opened only when needed (:class:`StoreAccess`)."""
    return build_container(settings, embedder, store=NO_STORE)


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
    container = _container(settings)
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
    report = plan.report
    report.dry_run = True
    report.added = sum(1 for p in plan.files if p.kind == "add")
    report.updated += sum(1 for p in plan.files if p.kind == "update") + len(plan.access)
    report.deleted += len(plan.deletions)
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
    keys = _Keys.of(name, job_id)
    size = settings.queue.files_per_task
    tasks: list[dict[str, Any]] = []
    calls: list[Any] = []
    for number, start in enumerate(range(0, len(plan.files), size), 1):
        part = plan.files[start : start + size]
        task_id = f"{job_id}-t{number}"
        tasks.append({"id": task_id, "sources": [p.document.source for p in part]})
        payload = [
            {"path": str(p.path), "kind": p.kind, "document": _document_dict(p.document)}
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
        changes = (job_id, task_id, [_document_dict(d) for d in plan.access], plan.deletions)
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
    keys = _Keys.of(queue_name, job_id)
    record = _hgetall(connection, keys.record)
    if not record:
        raise QueueError(
            f"no ingestion job {job_id} on queue {queue_name} (unknown, or older than "
            f"{KEEP_S // 86400} days)"
        )
    files = int(record.get("done_files", 0))  # tasks that ended (counted once each)
    chunks = int(record.get("done_chunks", 0))
    for raw in _hgetall(connection, keys.progress).values():  # tasks running now
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
    keys = _Keys.of(name, job_id)
    with redis_errors(url):
        queue = task_queue(name, connection)
        started = last_cleanup = time.monotonic()
        seen_files = seen_chunks = 0
        hinted = False
        first = status(connection, name, job_id)
        if progress is not None:
            progress.start(first["total_files"])
        while True:
            record = _hgetall(connection, keys.record)
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
    record = _hgetall(connection, _Keys.of(queue_name, job_id).record)
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


def _check_finish(connection: Redis, keys: _Keys, record: dict[str, str]) -> None:
    """The final task failed for good (it raised every time): end the job with its error."""
    try:
        finish = Job.fetch(record["finish_id"], connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return
    if finish.get_status() != JobStatus.FAILED:
        return
    report = report_from_dict(json.loads(record["plan"]))
    error = f"the job's final task failed: {_failure_text(finish)}"
    connection.hset(
        keys.record,
        mapping={
            "status": "failed",
            "error": error,
            "report": json.dumps(report.as_dict(), ensure_ascii=False),
            "workers": "{}",
        },
    )


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
        self.container = _container(settings, embedder)
        self.ingestor = Ingestor(self.container)
        self.access = StoreAccess(settings, connection, wait_s=store_wait_s, lock_ttl_s=lock_ttl_s)
        self._checked: set[str] = set()  # server collections created or checked

    def warm_up(self) -> None:
        """Load the embedding model now rather than in the first task."""
        self.container.collection_spec()

    @contextlib.contextmanager
    def writing(self) -> Iterator[VectorStore]:
        """The write phase of a task: the store is held (and ``self.container.store`` is
        it) for the ``with`` block."""
        collection = self.container.registry.active_collection(self.settings.store.collection)
        with self.access.session(collection) as store:
            if not self.access.embedded and collection not in self._checked:
                with self.access.lock():  # two workers must not create it together
                    store.ensure_collection(self.container.collection_spec())
                self._checked.add(collection)
            self.container.store, self.container.collection = store, collection
            try:
                yield store
            finally:
                self.container.store = NO_STORE

    def close(self) -> None:
        self.container.close()
        self.access.close()

    # -- tasks ----------------------------------------------------------------------------
    def ingest_files(
        self, job_id: str, task_id: str, files: list[dict[str, Any]]
    ) -> dict[str, Any]:
        keys = _Keys.of(self.settings.queue.name, job_id)
        items = [(Path(f["path"]), _document(f["document"]), f["kind"]) for f in files]
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
                with self.writing():
                    report.stage_seconds["store_wait"] = time.perf_counter() - waited
                    self.ingestor.commit(prepared, report)
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
        keys = _Keys.of(self.settings.queue.name, job_id)
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
            with self.writing():
                for raw in access:
                    document = _document(raw)
                    if self.ingestor.update_access(document.doc_id, document.groups, document.tags):
                        report.updated += 1
                for doc_id in deletions:
                    self.ingestor.delete(doc_id)
                    report.deleted += 1
        except EnclaveError as exc:
            error = str(exc)
        return self._done(keys, task_id, report, 0, error)

    def finish_job(self, job_id: str) -> dict[str, Any]:
        keys = _Keys.of(self.settings.queue.name, job_id)
        record = _hgetall(self.connection, keys.record)
        report = report_from_dict(json.loads(record["plan"]))
        results = _hgetall(self.connection, keys.results)
        workers: Counter[str] = Counter()
        error: str | None = None
        for task in json.loads(record["tasks"]):
            raw = results.get(task["id"])
            if raw is None:  # RQ gave up on it: its worker died every time, or it raised
                reason = self._lost(task["id"])
                report.failed += [Failure(source, reason) for source in task["sources"]]
                continue
            result = json.loads(raw)
            _merge(report, report_from_dict(result))
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
        self, keys: _Keys, task_id: str, report: IngestReport, files: int, error: str | None
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
        return f"its task failed: {_failure_text(job)}; run `enclave ingest` again"


def _failure_text(job: Job) -> str:
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


class _TaskDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM time limit, raising :class:`TaskTimedOut` instead of RQ's
    ``JobTimeoutException`` (an ``Exception``)."""

    def __init__(
        self, timeout: int, exception: type[BaseException] = JobTimeoutException, **kwargs: Any
    ) -> None:
        chosen = TaskTimedOut if exception is JobTimeoutException else exception
        super().__init__(timeout, chosen, **kwargs)  # type: ignore[no-untyped-call]


class IngestWorker(SimpleWorker):
    """RQ's in-process worker (the embedding model stays loaded between tasks), with a
    heartbeat thread while a task runs: a task whose worker stops heartbeating for
    :func:`heartbeat_ttl` seconds is abandoned, and RQ's registry cleanup (run by the
    waiting ``enclave ingest`` and by idle workers) hands it back to the queue."""

    death_penalty_class = _TaskDeathPenalty

    def __init__(self, *args: Any, heartbeat_s: float = HEARTBEAT_S, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        self._beat_s = heartbeat_s
        kwargs.setdefault("job_monitoring_interval", max(int(heartbeat_s), 1))
        kwargs.setdefault("worker_ttl", max(heartbeat_ttl(heartbeat_s), 60))
        kwargs.setdefault("maintenance_interval", 60)
        super().__init__(*args, **kwargs)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return heartbeat_ttl(self._beat_s)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Run the job if it calls one of :data:`TASKS`; fail it otherwise (a job that is
        not JSON, such as a pickled one, included: it is never unpickled)."""
        try:
            func_name: str | None = job.func_name
        except DeserializationError:
            func_name = None
        if func_name not in TASKS:
            what = repr(func_name) if func_name else "a job that is not JSON"
            logger.error("refused job %s: %s is not an ingestion task", job.id, what)
            try:
                raise QueueError(f"refused: {what} is not an Enclave ingestion task")
            except QueueError:
                job.retries_left = 0
                self.handle_job_failure(
                    job, queue, exc_string=traceback.format_exc(), execution=execution
                )
            return False
        return bool(super().perform_job(job, queue, execution))

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(job, execution, stop), name="rq-heartbeat", daemon=True
        )
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _beat(self, job: Job, execution: Execution, stop: threading.Event) -> None:
        while not stop.wait(self._beat_s):
            try:
                self.maintain_heartbeats(job, execution)
            except redis.RedisError as exc:
                logger.warning("heartbeat of task %s failed: %s", job.id, exc.__class__.__name__)


# -- (de)serialisation ------------------------------------------------------------------------


def _document_dict(document: Document) -> dict[str, Any]:
    return asdict(document)  # groups and tags (tuples) travel as JSON lists


def _document(raw: dict[str, Any]) -> Document:
    return Document(**{**raw, "groups": tuple(raw["groups"]), "tags": tuple(raw["tags"])})


def report_from_dict(raw: dict[str, Any]) -> IngestReport:
    """An :class:`IngestReport` from its ``as_dict`` form."""
    return IngestReport(
        added=int(raw.get("added", 0)),
        updated=int(raw.get("updated", 0)),
        unchanged=int(raw.get("unchanged", 0)),
        deleted=int(raw.get("deleted", 0)),
        chunks_written=int(raw.get("chunks_written", 0)),
        failed=[Failure(f["source"], f["reason"]) for f in raw.get("failed", [])],
        admin_only=int(raw.get("admin_only", 0)),
        warnings=[str(w) for w in raw.get("warnings", [])],
        dry_run=bool(raw.get("dry_run", False)),
        seconds=float(raw.get("seconds", 0.0)),
        stage_seconds={k: float(v) for k, v in raw.get("stage_seconds", {}).items()},
    )


def _merge(total: IngestReport, part: IngestReport) -> None:
    total.added += part.added
    total.updated += part.updated
    total.unchanged += part.unchanged
    total.deleted += part.deleted
    total.chunks_written += part.chunks_written
    total.failed += part.failed
    total.admin_only += part.admin_only
    total.warnings += part.warnings
    for stage, seconds in part.stage_seconds.items():
        total.stage_seconds[stage] = total.stage_seconds.get(stage, 0.0) + seconds
