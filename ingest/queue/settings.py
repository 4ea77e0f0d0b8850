"""The queue's limits and times, and the time-out of a task."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

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


class TaskTimedOut(BaseException):
    """A task ran past its time limit. A ``BaseException`` like ``KeyboardInterrupt``:
    the ``except Exception`` that keeps one bad file from stopping a job must not
    swallow it (the rest of the task would then run without a limit)."""


def heartbeat_ttl(heartbeat_s: float) -> int:
    """Seconds after a busy worker's last heartbeat before its task counts as abandoned
    (and a store lock it holds expires)."""
    return int(3 * heartbeat_s + 5)
