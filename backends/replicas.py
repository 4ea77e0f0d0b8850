"""The servers of one model and what a client knows of them: which to try next (fewest
requests in flight, ties in turn, those that failed recently last), and which are in
cool-down after a failure."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Replica:
    """One server of the model, and what the client knows about it."""

    url: str  # the OpenAI API root, without a trailing slash
    shown: str  # the URL for messages and logs: without user:password@
    in_flight: int = 0
    down_until: float = 0.0  # clock time until which it is passed over
    down: bool = False


class Replicas:
    """The servers of model ``name``, shared by the threads and tasks that call it."""

    def __init__(
        self,
        name: str,
        servers: list[tuple[str, str]],
        *,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``servers``: (URL, URL as shown) in configured order."""
        self._name = name
        self._replicas = [Replica(url, shown) for url, shown in servers]
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0  # the replica that wins the next tie

    def __len__(self) -> int:
        return len(self._replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self._replicas)

    @property
    def urls(self) -> list[str]:
        """The servers (without credentials), in configured order."""
        return [r.shown for r in self._replicas]

    def down(self) -> list[str]:
        """The servers passed over now because they failed recently."""
        now = self._clock()
        with self._lock:
            return [r.shown for r in self._replicas if r.down and r.down_until > now]

    def acquire(self, tried: set[int]) -> Replica | None:
        """The replica for the next try (none of ``tried``), counted in flight: the
        fewest requests in flight wins, ties in turn; those in cool-down come last."""
        now = self._clock()
        n = len(self._replicas)
        with self._lock:
            left = [i for i in range(n) if i not in tried]
            if not left:
                return None
            best = min(
                left,
                key=lambda i: (
                    self._replicas[i].down_until > now,
                    self._replicas[i].in_flight,
                    (i - self._next) % n,
                ),
            )
            tried.add(best)
            self._next = (best + 1) % n
            replica = self._replicas[best]
            replica.in_flight += 1
            return replica

    def release(self, replica: Replica) -> None:
        with self._lock:
            replica.in_flight -= 1

    def mark_down(self, replica: Replica, reason: str) -> None:
        """Pass ``replica`` over for the cool-down (logged when that is news)."""
        with self._lock:
            replica.down_until = self._clock() + self._cooldown_s
            was_down, replica.down = replica.down, True
        if not was_down and len(self._replicas) > 1:
            logger.warning(
                "LLM server %s (model %s) failed (%s); passing it over for %g s",
                replica.shown,
                self._name,
                reason,
                self._cooldown_s,
            )

    def mark_up(self, replica: Replica) -> None:
        with self._lock:
            was_down, replica.down, replica.down_until = replica.down, False, 0.0
        if was_down and len(self._replicas) > 1:
            logger.info("LLM server %s (model %s) answers again", replica.shown, self._name)
