"""Dynamic batching: requests queue; one worker thread takes the first, waits up to the window for more with the same
key (the same generation settings), up to the batch size, and runs them as one batch. All model work happens in that
thread, so the event loop stays free and the model and tokenizer are never used by two threads at once."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional

BatchRunner = Callable[[Hashable, list[Any]], list[Any]]  # (key, payloads) -> one result or Exception per payload


def _ignore(payloads: list[Any]) -> None:
    """The default batch observer: nothing to record."""


@dataclass
class Job:
    key: Optional[Hashable]  # None: runs alone (a seeded sampled generation)
    payload: Any
    future: Future = field(default_factory=Future)


class Batcher:
    """A queue and the worker thread that drains it in batches of up to `max_batch_size` within `window_s`."""

    def __init__(
        self, run: BatchRunner, max_batch_size: int, window_s: float, on_batch: Callable[[list[Any]], None] = _ignore
    ) -> None:
        self._run, self.max_batch_size, self.window_s, self._on_batch = run, max_batch_size, window_s, on_batch
        self._queue: queue.Queue[Optional[Job]] = queue.Queue()
        self._held: deque[Job] = deque()  # taken while gathering another key's batch: first in line next round
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="llmft-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, fail what is still queued, and end the worker."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, key: Optional[Hashable], payload: Any) -> Future:
        """Queue one request; its future resolves to the runner's result for it (or raises its exception)."""
        job = Job(key, payload)
        if self._stopping:
            job.future.set_exception(RuntimeError("the server is shutting down"))
        else:
            self._queue.put(job)
        return job.future

    def _take(self, timeout: Optional[float]) -> Optional[Job]:
        """The next job (held ones first); None on stop; raises queue.Empty after `timeout`."""
        if self._held:
            return self._held.popleft()
        job = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        if job is None:
            self._stopping = True
        return job

    def next_batch(self) -> list[Job]:
        """The first job and the jobs of its key that arrive within the window (queued ones join at once)."""
        first = self._take(None)
        if first is None:
            return []
        batch, deadline = [first], time.monotonic() + self.window_s
        if first.key is None:
            return batch
        others: list[Job] = []
        pending = list(self._held)
        self._held.clear()
        for job in pending:  # held jobs of the same key join first
            (batch if job.key == first.key and len(batch) < self.max_batch_size else others).append(job)
        while len(batch) < self.max_batch_size and not self._stopping:
            try:
                job = self._take(deadline - time.monotonic())
            except queue.Empty:
                break
            if job is None:
                break
            (batch if job.key == first.key else others).append(job)
        self._held.extend(others)
        return batch

    def _work(self) -> None:
        while True:
            batch = self.next_batch()
            if not batch:
                break
            self._run_batch([job for job in batch if job.future.set_running_or_notify_cancel()])
        for job in [*self._held, *iter_queue(self._queue)]:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))

    def _run_batch(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        self._on_batch([job.payload for job in jobs])
        try:
            results = self._run(jobs[0].key, [job.payload for job in jobs])
        except BaseException as ex:  # noqa: BLE001 - the requests get the error; the worker keeps serving
            results = [ex] * len(jobs)
        for job, result in zip(jobs, results):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)


def iter_queue(q: queue.Queue) -> list[Any]:
    """What is left in a queue (stop sentinels dropped)."""
    items = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return items
        if item is not None:
            items.append(item)
