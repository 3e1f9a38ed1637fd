"""Timing shared by the benchmarks: one warm-up call, then `repeats` timed calls, each followed by `sync`
(torch.cuda.synchronize on a GPU) so asynchronous work is counted."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> list[float]:
    """Milliseconds per call."""
    fn()  # warm-up
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples
