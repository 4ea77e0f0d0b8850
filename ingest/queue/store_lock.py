"""The vector store for processes that write only part of the time (queue workers):
a Qdrant server kept open, or an embedded store held only for a write phase, under a
Redis lock the queue's workers share.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis import Redis
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from backends.container import NO_STORE, Container, build_container, build_store
from core.errors import StoreLockedError
from core.protocols import Embedder, VectorStore
from core.settings import Settings

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

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
        """The store, tried again (0.1 s, doubling to 2 s) while another process holds it,
        until ``deadline``."""
        try:
            for attempt in Retrying(
                stop=stop_after_delay(max(deadline - time.monotonic(), 0.0)),
                wait=wait_exponential(multiplier=0.1, max=2.0),
                retry=retry_if_exception_type(StoreLockedError),
                reraise=True,
            ):
                with attempt:
                    return build_store(self._settings, collection)
        except StoreLockedError as exc:
            raise StoreLockedError(
                f"the embedded store at {self._location} stayed in use by another "
                f"Enclave process for {self._wait_s:g} s (`enclave serve` or an "
                "in-process `enclave ingest` holds it while it runs). Stop it, or use "
                "a Qdrant server (ENCLAVE_STORE__URL) for workers and the API together"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises

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


def worker_container(settings: Settings, embedder: Embedder | None = None) -> Container:
    """A container whose store is opened only when needed (:class:`StoreAccess`)."""
    return build_container(settings, embedder, store=NO_STORE)
