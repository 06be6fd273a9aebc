"""Capacity of one server: serving threads, the offline gate, and requests in flight per key.

Online reads (`serve`) run on their own threads (`serve_threads`), so offline work never
takes them. Offline work (historical requests, Spark or DuckDB) runs on `offline_threads`
threads with at most `offline_queue` requests waiting; a request that finds both full is
refused at once (503 with `Retry-After`), and one that runs past `offline_timeout_seconds` is
answered 504 (its Spark jobs are interrupted through their operation tag; its thread stays
taken until the engine returns, so timed-out work still counts against the capacity). Each API
key may have `max_concurrent_per_key` requests in flight (429 beyond).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from featurelake.server.errors import OfflineTimeoutError, ServerBusyError, TooManyRequestsError

T = TypeVar("T")


class KeyLimiter:
    """Counts the requests each key has in flight."""

    def __init__(self, limit: int, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> None:
        """Take a place for the key, or TooManyRequestsError."""
        with self._lock:
            count = self._counts.get(key_id, 0)
            if count >= self.limit:
                raise TooManyRequestsError(
                    f"This API key already has {count} requests in flight, its limit.",
                    code="too_many_requests",
                    fix="wait for answers before sending more, or retry after the time in "
                    "the Retry-After header.",
                    retry_after=self.retry_after,
                )
            self._counts[key_id] = count + 1

    def release(self, key_id: str) -> None:
        with self._lock:
            count = self._counts.get(key_id, 0) - 1
            if count > 0:
                self._counts[key_id] = count
            else:
                self._counts.pop(key_id, None)

    def in_flight(self, key_id: str) -> int:
        with self._lock:
            return self._counts.get(key_id, 0)


class OfflineGate:
    """Bounded threads, a bounded queue and a per-request timeout for offline work."""

    def __init__(self, threads: int, queue: int, timeout: float, retry_after: float) -> None:
        self.capacity = threads + queue
        self.timeout = timeout
        self.retry_after = retry_after
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="featurelake-offline")
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Offline requests running or waiting (timed-out work counts until it returns)."""
        with self._lock:
            return self._taken

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Start `work` on an offline thread, or ServerBusyError when the gate is full."""
        with self._lock:
            if self._taken >= self.capacity:
                raise ServerBusyError(
                    f"The server is running and queueing as much offline work as it may "
                    f"({self.capacity} requests).",
                    code="server_busy",
                    fix="retry after the time in the Retry-After header.",
                    retry_after=self.retry_after,
                )
            self._taken += 1
        future = self._pool.submit(work)
        future.add_done_callback(self._release)
        return future

    async def run(self, work: Callable[[], T], on_timeout: Callable[[], Any] | None = None) -> T:
        """`work`'s result, awaited at most `timeout` seconds (OfflineTimeoutError after)."""
        future = self.submit(work)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            if on_timeout is not None:
                on_timeout()
            raise OfflineTimeoutError(
                f"The request ran longer than the server's limit of {self.timeout:g} s for "
                "offline work and was stopped.",
                code="offline_timeout",
                fix="ask for fewer entities, features or a shorter range, or retry later.",
                retry_after=self.retry_after,
            ) from None

    def _release(self, _: Future[Any]) -> None:
        with self._lock:
            self._taken -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ServePool:
    """The threads of online reads."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="featurelake-serve")

    async def run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
