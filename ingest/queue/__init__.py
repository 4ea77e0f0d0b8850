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


Where things are::

    settings.py     limits and times; TaskTimedOut
    connection.py   the Redis URL, connection and errors; where a job lives in Redis
    store_lock.py   StoreAccess: the store for processes that write part of the time
    client.py       plan, submit, wait, status, outcome (``enclave ingest``, the API)
    tasks.py        TaskRunner and the task functions RQ calls
    worker.py       IngestWorker (``enclave worker``)
    serial.py       documents and reports as JSON
"""

from ingest.queue.client import (
    Outcome,
    Submitted,
    dry_run,
    outcome,
    status,
    submit,
    task_queue,
    wait,
)
from ingest.queue.connection import connect, display_url, queue_url, redis_errors
from ingest.queue.settings import HEARTBEAT_S, STORE_WAIT_S, TASK_TIMEOUT_S, heartbeat_ttl
from ingest.queue.store_lock import StoreAccess
from ingest.queue.tasks import TaskRunner, install_runner
from ingest.queue.worker import IngestWorker

__all__ = [
    "HEARTBEAT_S",
    "STORE_WAIT_S",
    "TASK_TIMEOUT_S",
    "IngestWorker",
    "Outcome",
    "StoreAccess",
    "Submitted",
    "TaskRunner",
    "connect",
    "display_url",
    "dry_run",
    "heartbeat_ttl",
    "install_runner",
    "outcome",
    "queue_url",
    "redis_errors",
    "status",
    "submit",
    "task_queue",
    "wait",
]
