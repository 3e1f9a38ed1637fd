"""CPU thread budgets for model runtimes that several live streams share.

Every stream calls the models from threads of its own. torch on a CPU gives each calling thread its own OpenMP
team of `torch.get_num_threads()` threads (one per core by default), so four streams running SAM 2 on a
2-core box ask for eight busy threads and spend the difference switching between them. `serve` therefore sets
torch's intra-op threads to the cores divided by the streams (at least one) when a torch model runs on the CPU.
onnxruntime's runs of one session share its own thread pool, whatever calls them; but one run at a time on two
intra-op threads uses two cores worse than two runs on one thread each (the threads wait for each other at every
layer while the decoders take the cores in turn), so `serve`'s shared detector queue runs one keyframe per core
at once, each session run on its share of the cores (`pipeline.loading.detector_queue_workers`).

OpenCV (each frame's colour conversion and motion estimate, drawing) splits a call over its own pool of worker
threads, one per core, which spin (`sched_yield`) while they wait for the next call. With a stream per core or
more, the streams' own threads already fill the cores, and the pool's spinning is pure loss: 16 quiet cameras on
the 2-core AMD EPYC took 41% CPU with OpenCV on one thread against 51% with its pool (three runs each, alternating).
So `serve` gives OpenCV the same budget, one thread (no pool) from as many streams as cores.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_budget(streams: int, cores: int | None = None) -> int:
    """Intra-op threads per stream: the cores shared out among the streams, at least one each."""
    return max(1, (cores or usable_cores()) // max(1, streams))


def apply_torch_budget(streams: int, providers: Iterable[str]) -> int | None:
    """Set torch's intra-op threads to `thread_budget(streams)` when a model runs on torch's CPU backend
    (`providers`: the runtimes in use, as `Models.providers()` names them); the threads set, or None."""
    if not any(p.startswith("torch:cpu") for p in providers) or "torch" not in sys.modules:
        return None
    import torch

    threads = thread_budget(streams)
    torch.set_num_threads(threads)
    log.info("torch on the CPU: %d intra-op thread(s) per stream (%d cores, %d streams)", threads,
             usable_cores(), streams)
    return threads


def apply_opencv_budget(streams: int) -> int:
    """Set OpenCV's threads per call to `thread_budget(streams)` (1: every call on its caller's thread, no pool);
    the threads set."""
    import cv2

    threads = thread_budget(streams)
    cv2.setNumThreads(threads)
    log.info("OpenCV: %d thread(s) per call (%d cores, %d streams)", threads, usable_cores(), streams)
    return threads
