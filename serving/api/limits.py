"""Limits per caller: requests per key, failed sign-ins per address, answers in progress
per key. All per process (see the README's known limitations)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from serving.api.errors import ApiError


class RateLimiter:
    """A token bucket per API key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        """Take one token for ``key_id`` or raise a 429 ``ApiError`` with Retry-After."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self._rate)
                self._buckets[key_id] = (tokens, now)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many requests for this API key; retry in {wait} s",
                    {"Retry-After": str(wait)},
                )
            self._buckets[key_id] = (tokens - 1.0, now)


class FailureThrottle:
    """Failed sign-ins per client address: after ``per_minute`` failures, that address is
    refused (429) without its key being checked, until the bucket refills."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, last = self._buckets.get(client, (self._capacity, now))
        return min(self._capacity, tokens + (now - last) * self._rate)

    def check(self, client: str) -> None:
        """Refuse ``client`` while its failures are spent."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(client, now)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self._rate)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"too many failed sign-ins from this address; retry in {wait} s",
                    {"Retry-After": str(wait)},
                )

    def failed(self, client: str) -> None:
        """Count one failed sign-in of ``client``."""
        now = time.monotonic()
        with self._lock:
            self._buckets[client] = (self._tokens(client, now) - 1.0, now)
            if len(self._buckets) > 100_000:  # bounded memory under a spray of addresses
                self._buckets.clear()


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
