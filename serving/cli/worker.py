"""``enclave worker``: run ingestion tasks from the Redis queue (``ENCLAVE_QUEUE__URL``).

The worker loads the embedding model once, then takes tasks that ``enclave ingest``
enqueued (see ``ingest/queue.py``). Start as many as the machine has cores for (each
parses and embeds on its own); with an embedded store they write in turn, with a
Qdrant server in parallel. SIGTERM or Ctrl-C stops a worker after its current task (a
second one stops it at once; the task is then run again by another worker).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from serving.cli.context import Invocation


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add ``worker`` to the root app."""

    @app.command()
    def worker(
        name: Annotated[
            str | None, typer.Option(help="Worker name (default: host name and process id).")
        ] = None,
        burst: Annotated[
            bool, typer.Option("--burst", help="Exit when the queue is empty.")
        ] = False,
        heartbeat: Annotated[
            float,
            typer.Option(
                min=0.5,
                help="Seconds between heartbeats while a task runs; a task whose worker is "
                "silent for 3x this (+5 s) is given to another worker.",
            ),
        ] = 15.0,
        store_wait: Annotated[
            float,
            typer.Option(
                "--store-wait",
                min=1,
                help="Longest wait, in seconds, of a task for an embedded store that other "
                "processes hold; then its files are reported as failed.",
            ),
        ] = 600.0,
    ) -> None:
        """Run ingestion tasks from the Redis queue (ENCLAVE_QUEUE__URL, ENCLAVE_QUEUE__NAME)
        until stopped."""

        from ingest import queue

        settings = inv.settings()
        url = queue.queue_url(settings)
        connection = queue.connect(settings)
        worker_name = name or f"{socket.gethostname()}-{os.getpid()}"
        runner = queue.TaskRunner(
            settings,
            connection,
            name=worker_name,
            store_wait_s=store_wait,
            lock_ttl_s=queue.heartbeat_ttl(heartbeat),
        )
        try:
            runner.warm_up()
            queue.install_runner(runner)
            where = (
                "a Qdrant server, kept open"
                if settings.store.url
                else f"{settings.store.engine} at {settings.store_path.resolve()}, "
                "opened for each write"
            )
            typer.echo(
                f"enclave worker {worker_name} ready: queue {settings.queue.name} on "
                f"{queue.display_url(url)}; store: {where}",
                err=True,
            )
            with queue.redis_errors(url):
                rq_worker = queue.IngestWorker(
                    [queue.task_queue(settings.queue.name, connection)],
                    connection=connection,
                    name=worker_name,
                    heartbeat_s=heartbeat,
                )
                rq_worker.work(burst=burst, logging_level=settings.log.level)
        finally:
            queue.install_runner(None)
            runner.close()
        typer.echo(f"enclave worker {worker_name} stopped", err=True)
