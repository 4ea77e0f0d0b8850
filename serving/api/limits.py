"""Limits per caller: requests per key and failed sign-ins per address (the ``limits``
library: moving one-minute windows, in Redis when the ingestion queue's Redis is
configured, so API replicas share them; in memory otherwise), and answers in progress
per key (per process)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.settings import Settings
from serving.api.errors import ApiError


def limit_storage(settings: Settings) -> Storage:
    """Where the windows are counted: the queue's Redis (shared by API replicas), or this
    process's memory."""
    if settings.queue.url is not None:
        storage = storage_from_string(settings.queue.url.get_secret_value())
        assert isinstance(storage, Storage)  # a redis:// URL gives the synchronous storage
        return storage
    return MemoryStorage()


class _Window:
    """``per_minute`` events per key in a moving one-minute window."""

    def __init__(self, per_minute: int, storage: Storage, namespace: str) -> None:
        self._item = RateLimitItemPerMinute(per_minute, namespace=namespace)
        self._limiter = MovingWindowRateLimiter(storage)

    def hit(self, key: str) -> bool:
        """Count one event of ``key``; False when its window was full already."""
        return bool(self._limiter.hit(self._item, key))

    def full(self, key: str) -> bool:
        return not self._limiter.test(self._item, key)

    def wait_s(self, key: str) -> int:
        reset = self._limiter.get_window_stats(self._item, key).reset_time
        return max(1, math.ceil(reset - time.time()))


class RateLimiter:
    """``per_minute`` requests per API key (then 429 with Retry-After)."""

    def __init__(self, per_minute: int, storage: Storage | None = None) -> None:
        self._window = _Window(per_minute, storage or MemoryStorage(), "enclave-requests")

    def check(self, key_id: str) -> None:
        """Count one request of ``key_id``, or raise a 429 ``ApiError`` with Retry-After."""
        if not self._window.hit(key_id):
            wait = self._window.wait_s(key_id)
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this API key; retry in {wait} s",
                {"Retry-After": str(wait)},
            )


class FailureThrottle:
    """Failed sign-ins per client address: after ``per_minute`` failures in a minute, that
    address is refused (429) without its key being checked, until the window moves on."""

    def __init__(self, per_minute: int, storage: Storage | None = None) -> None:
        self._window = _Window(per_minute, storage or MemoryStorage(), "enclave-sign-ins")

    def check(self, client: str) -> None:
        """Refuse ``client`` while its failures fill the window."""
        if self._window.full(client):
            wait = self._window.wait_s(client)
            raise ApiError(
                429,
                "rate_limited",
                f"too many failed sign-ins from this address; retry in {wait} s",
                {"Retry-After": str(wait)},
            )

    def failed(self, client: str) -> None:
        """Count one failed sign-in of ``client``."""
        self._window.hit(client)


class InFlight:
    """Answers in progress per API key, at most ``limit`` each (then 429)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> Callable[[], None]:
        """Count one answer of ``key_id``; the function that ends it (safe to call twice)."""
        with self._lock:
            if self._counts.get(key_id, 0) >= self._limit:
                raise ApiError(
                    429,
                    "rate_limited",
                    f"this API key already has {self._limit} answers in progress; wait for one "
                    "to finish (ENCLAVE_API__MAX_ANSWERS_PER_KEY)",
                    {"Retry-After": "1"},
                )
            self._counts[key_id] = self._counts.get(key_id, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._counts.get(key_id, 1) - 1
                if left > 0:
                    self._counts[key_id] = left
                else:
                    self._counts.pop(key_id, None)

        return release

    def count(self, key_id: str) -> int:
        with self._lock:
            return self._counts.get(key_id, 0)
