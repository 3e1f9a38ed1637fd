"""Cross-stream batching: requests from many streams' threads run through one model call, within a latency budget.

A GPU runs a batch of 8 keyframes (or 8 SAM 2 image encodings) in little more than the time of one, so a server
with many streams gains by running them together. `Batcher` gathers requests into a batch and runs it on its own
worker thread: a batch starts when it is full (`max_batch`), when every stream that has submitted lately has a
request in it (nobody else is coming: one stream alone never waits), or when its oldest request has waited
`batch_wait_ms`, whichever comes first. A request that arrives while a batch runs waits for the next one.

Fairness: each stream (a *lane*, by default the calling thread, since every stream calls from its own threads)
has its own queue, and a batch takes one request from each lane in turn, starting after the lane served first
last time, so a stream that submits often cannot crowd out the others. Priorities (`set_priority`: a stream
someone watches, say) go first when a batch cannot take everyone (on a CPU a batch is one request); a lane passed
over `STARVE_AFTER` batches in a row goes first next, so none is starved. Order: a lane's requests run and
complete in the order they were submitted. Overflow policy: a lane holds at most `max_pending` requests; a
newer one replaces the oldest, whose future is cancelled and counted in `dropped` (the newest frame wins, as
everywhere in live mode).

Workers: on a CPU, where a batch is one request, `workers` threads may each run one (an onnxruntime session runs
calls from several threads at once): two runs with one intra-op thread each get more from two cores than one run
with two, whose threads wait for each other at every layer while the decoders take turns on the cores. A lane
never has two requests running at once, so its order holds whatever the number of workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
STARVE_AFTER = 3  # batches a waiting lane may be passed over before it goes first
In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(slots=True)
class BatcherStats:
    batches: int = 0
    items: int = 0
    dropped: int = 0
    largest: int = 0
    waits_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1024))  # submit -> batch start

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


@dataclass(slots=True)
class _Request(Generic[In, Out]):
    item: In
    future: Future[Out]
    submitted: float  # time.monotonic()
    lane: Hashable


class BatcherClosed(RuntimeError):
    """The batcher was closed; its requests fail with this."""


class Batcher(Generic[In, Out]):
    """Runs `run_batch(items) -> outputs` (one output per item, in order) on batches of requests from many lanes."""

    def __init__(self, name: str, run_batch: Callable[[list[In]], Sequence[Out]], max_batch: int = 8,
                 batch_wait_ms: float = 5.0, max_pending: int = 4, lane_idle_s: float = 5.0,
                 workers: int = 1) -> None:
        if max_batch < 1 or max_pending < 1 or batch_wait_ms < 0 or workers < 1:
            raise ValueError("max_batch, max_pending and workers must be at least 1, batch_wait_ms at least 0")
        self.name = name
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1e3
        self.max_pending = max_pending
        self.workers = workers  # requests (batches) that run at once
        self.lane_idle_s = lane_idle_s  # a lane that submitted nothing this long is no longer waited for
        self._seen: dict[Hashable, float] = {}  # lane -> its latest submit
        self.stats = BatcherStats()
        self._lanes: dict[Hashable, deque[_Request[In, Out]]] = {}
        self._order: list[Hashable] = []  # lanes in the order they first appeared: the round-robin ring
        self._next = 0  # where the next batch starts in the ring
        self._priority: dict[Hashable, int] = {}  # lane -> its priority (higher first; 0 when unset)
        self._passed_over: dict[Hashable, int] = {}  # lane -> batches it waited through in a row
        self._running: set[Hashable] = set()  # lanes with a request in a batch that runs now
        self._cond = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, item: In, lane: Hashable | None = None) -> Future[Out]:
        """Queue `item` on `lane` (default: the calling thread); its future resolves when its batch has run."""
        future: Future[Out] = Future()
        lane = threading.get_ident() if lane is None else lane
        with self._cond:
            if self._closed:
                future.set_exception(BatcherClosed(f"batcher {self.name} is closed"))
                return future
            queue = self._lanes.get(lane)
            if queue is None:
                queue = self._lanes[lane] = deque()
                self._order.append(lane)
            if len(queue) >= self.max_pending:
                queue.popleft().future.cancel()
                self.stats.dropped += 1
            now = time.monotonic()
            self._seen[lane] = now
            queue.append(_Request(item, future, now, lane))
            self._cond.notify()
        return future

    def set_priority(self, priority: int, lane: Hashable | None = None) -> None:
        """`lane`'s requests (default: the calling thread's) go before lower priorities' when a batch is full."""
        with self._cond:
            self._priority[threading.get_ident() if lane is None else lane] = priority

    def __call__(self, item: In, lane: Hashable | None = None) -> Out:
        """`submit` and wait for the output (what a stream's thread does)."""
        return self.submit(item, lane).result()

    def close(self) -> None:
        """Stop the worker; requests not yet started fail with `BatcherClosed`."""
        with self._cond:
            self._closed = True
            pending = [r for queue in self._lanes.values() for r in queue]
            self._lanes.clear()
            self._cond.notify_all()
        for request in pending:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(BatcherClosed(f"batcher {self.name} is closed"))
        for worker in self._workers:
            worker.join(timeout=5)

    # -- the worker ---------------------------------------------------------------------------------------------
    def _pending(self) -> int:
        """Requests a batch may take now (not those of a lane whose request is running)."""
        return sum(len(queue) for lane, queue in self._lanes.items() if lane not in self._running)

    def _everyone_in(self) -> bool:
        """Every lane active within `lane_idle_s` has a request waiting: no one else is coming to join."""
        now = time.monotonic()
        for lane in [lane for lane, seen in self._seen.items() if now - seen > self.lane_idle_s]:
            del self._seen[lane]
            self._priority.pop(lane, None)  # set again with its next request (a stream sets it with each)
        return all(self._lanes.get(lane) for lane in self._seen)

    def _oldest(self) -> float:
        return min(queue[0].submitted for lane, queue in self._lanes.items() if queue and lane not in self._running)

    def _turns(self) -> list[Hashable]:
        """The lanes in the order this batch serves them: passed over too long first, then by priority, then
        round-robin from after the lane served first last time."""
        ring = self._order
        start = self._next % len(ring)
        rotated = [ring[(start + offset) % len(ring)] for offset in range(len(ring))]
        return sorted(rotated, key=lambda lane: (self._passed_over.get(lane, 0) < STARVE_AFTER,
                                                 -self._priority.get(lane, 0)))

    def _take_batch(self) -> list[_Request[In, Out]]:
        """One request per lane per turn (`_turns`), until the batch is full or the lanes are empty."""
        batch: list[_Request[In, Out]] = []
        turns = self._turns()
        served: set[Hashable] = set()
        while len(batch) < self.max_batch and self._pending():
            for lane in turns:
                queue = self._lanes[lane]
                if queue and len(batch) < self.max_batch and lane not in self._running:
                    batch.append(queue.popleft())
                    served.add(lane)
            if self.workers > 1:  # one request per lane per batch: the lane's next waits for this one
                break
        for lane, queue in self._lanes.items():
            self._passed_over[lane] = 0 if lane in served or not queue else self._passed_over.get(lane, 0) + 1
        self._next = self._next % len(self._order) + 1
        self._running |= served
        for lane in [lane for lane, queue in self._lanes.items() if not queue and lane not in self._running]:
            del self._lanes[lane]
            self._passed_over.pop(lane, None)
            index = self._order.index(lane)
            self._order.remove(lane)
            if index < self._next:
                self._next -= 1
        return batch

    def _wait_for_batch(self) -> list[_Request[In, Out]] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                pending = self._pending()
                if pending >= self.max_batch or (pending and self._everyone_in()):
                    return self._take_batch()
                if pending:
                    left = self._oldest() + self.batch_wait_s - time.monotonic()
                    if left <= 0:
                        return self._take_batch()
                    self._cond.wait(left)
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while (taken := self._wait_for_batch()) is not None:
            try:
                self._run(taken)
            finally:
                with self._cond:  # the lanes may run their next requests
                    self._running.difference_update(r.lane for r in taken)
                    self._cond.notify_all()

    def _run(self, taken: list[_Request[In, Out]]) -> None:
        started = time.monotonic()
        batch = [r for r in taken if r.future.set_running_or_notify_cancel()]
        if not batch:
            return
        with self._cond:
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            self.stats.waits_ms.extend((started - r.submitted) * 1e3 for r in batch)
        try:
            outputs = list(self.run_batch([r.item for r in batch]))
            if len(outputs) != len(batch):
                raise RuntimeError(f"batcher {self.name}: {len(batch)} items gave {len(outputs)} outputs")
        except Exception as exc:  # every request of the batch learns why; the worker carries on
            log.exception("batcher %s: a batch of %d failed", self.name, len(batch))
            for request in batch:
                request.future.set_exception(exc)
            return
        for request, output in zip(batch, outputs, strict=True):
            request.future.set_result(output)
