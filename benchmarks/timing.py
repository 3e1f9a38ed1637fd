"""Timing shared by the benchmarks: warm-up calls, then `repeats` timed calls, each followed by `sync`
(torch.cuda.synchronize on a GPU) so asynchronous work is counted."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None], warmup: int = 1) -> list[float]:
    """Milliseconds per call, after `warmup` calls (compiled code compiles and CUDA graphs record there)."""
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples
