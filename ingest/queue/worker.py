"""``enclave worker``'s RQ worker: in-process (the model stays loaded), heartbeats while
a task runs, RQ's time limit as :class:`TaskTimedOut`, and only Enclave's task functions
run (tasks are JSON, never unpickled).
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.worker import WorkerStatus

from core.errors import QueueError

if TYPE_CHECKING:
    from rq.executions import Execution

from ingest.queue.settings import HEARTBEAT_S, TaskTimedOut, heartbeat_ttl
from ingest.queue.tasks import TASKS

logger = logging.getLogger(__name__)


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
