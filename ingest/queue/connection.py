"""The Redis connection of the queue: its URL (never shown with its password), the
errors it raises as ``QueueError``, and where a job lives in Redis.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import redis
from redis import Redis

from core.errors import QueueError
from core.settings import Settings

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

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
class Keys:
    """Where a job lives in Redis."""

    record: str  # hash: status, plan, tasks, report, ...
    results: str  # hash: task id -> the task's report (JSON)
    progress: str  # hash: task id -> "files chunks" while it runs

    @classmethod
    def of(cls, queue_name: str, job_id: str) -> Keys:
        base = f"enclave:ingest:{queue_name}:{job_id}"
        return cls(base, f"{base}:results", f"{base}:progress")


def text_of(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def hgetall(connection: Redis, key: str) -> dict[str, str]:
    raw = cast(dict[bytes, bytes], connection.hgetall(key))
    return {text_of(k): text_of(v) for k, v in raw.items()}
