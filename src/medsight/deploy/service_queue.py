"""The service's inference queue: a bounded pool of worker threads, requests answered in arrival order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from medsight.errors import ConfigError

MAX_QUEUE = 64  # requests waiting for a worker beyond this are refused with 503


class ServiceError(Exception):
    """An HTTP error with a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# ------------------------------------------------------------------------------------------------ schemas


class InferenceQueue:
    """A bounded pool of worker threads: jobs run in arrival order, at most ``workers`` at a time.

    The threads start with the first job (or :meth:`start`) and stop when the last server that
    started them stops (:meth:`shutdown`); the same app can be served again afterwards.
    """

    def __init__(self, workers: int = 1, max_queue: int = MAX_QUEUE) -> None:
        if workers < 1:
            raise ConfigError(f"workers: expected >= 1, got {workers}")
        self.workers, self.max_queue = workers, max_queue
        self.pending = 0
        self.served = 0  # requests answered 200 (counted by the app)
        self._pool: ThreadPoolExecutor | None = None
        self._users = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """A server starts using the queue."""
        with self._lock:
            self._users += 1

    def shutdown(self) -> None:
        """A server stops; the last one stops the threads (queued jobs are cancelled)."""
        with self._lock:
            self._users = max(0, self._users - 1)
            pool, self._pool = (self._pool, None) if self._users == 0 else (None, self._pool)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, job: Callable[[], Any]) -> Future:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="medsight-infer")
            return self._pool.submit(job)

    async def run(self, job: Callable[[], Any], timeout_s: float) -> Any:
        """Run ``job`` on a worker; ServiceError 503 when the queue is full or the job never started
        within ``timeout_s``, 504 when it started but did not finish in time."""
        with self._lock:
            if self.pending >= self.max_queue:
                raise ServiceError(503, f"the server is busy ({self.pending} requests waiting); retry later")
            self.pending += 1
        try:
            future = self._submit(job)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            if future.cancelled() or future.cancel():
                raise ServiceError(
                    503,
                    f"the request waited {timeout_s:g} s behind other requests without starting; retry later",
                ) from None
            raise ServiceError(504, f"processing took longer than the limit of {timeout_s:g} s") from None

    def _done(self, _: Future | None) -> None:
        with self._lock:
            self.pending -= 1
