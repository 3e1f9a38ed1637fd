"""The server's C heap: memory that threads freed goes back to the system.

A server that decodes, encodes and detects many streams for days allocates and frees on many threads: FFmpeg's
frames, x264's buffers, numpy images, ONNX Runtime's tensors. glibc's malloc keeps what a thread freed in that
thread's arena for reuse (up to 8 arenas per core) and hands a page back to the system only when it lies at the
top of an arena. So the process keeps, spread over a dozen arenas, what its busiest moment held, and creeps up as
threads come and go (viewers, reconnecting cameras). Every `STREAMVIS_HEAP_TRIM_S` seconds (60 by default, 0
never) `serve` asks malloc to hand back every whole free page of every arena (`malloc_trim(0)`), off the event
loop (`HeapTrimmer`); what that gives back is counted in `/metrics`. glibc only.

It leaves the number of arenas as glibc sets it. Capped at two (`MALLOC_ARENA_MAX=2`), the same server started
lower but kept rising over two hours (+20 MB an hour), while with glibc's arenas and these trims it levelled off
(`benchmarks/soak.py`; the many-cameras guide has both runs).

`/metrics` also gives the bytes malloc has handed out and not had back (`malloc_in_use_bytes`): resident memory
that grows while this stays level is what malloc keeps (fragmentation), not a leak.

Why not jemalloc or tcmalloc: either would have to be preloaded into the process by whoever starts it; this call
needs nothing installed. `benchmarks/soak.py` measures it against glibc's defaults (`--compare-env`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import platform
import resource
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

ARENA_BYTES = 64 << 20  # glibc reserves a thread arena's memory in 64 MiB regions on a 64 MiB boundary (64-bit)


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (musl and others have neither call)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def resident_bytes() -> int:
    """This process's resident memory now (`/proc/self/statm`), 0 where there is no /proc."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class MemoryParts:
    """Where a process's resident memory lies, in MB, by kind of mapping (`/proc/PID/smaps`)."""

    heap_mb: float = 0.0  # malloc's main arena (`[heap]`)
    arenas_mb: float = 0.0  # its thread arenas
    anon_mb: float = 0.0  # other anonymous memory: blocks malloc maps on their own, thread stacks, Python's arenas
    files_mb: float = 0.0  # mapped files: libraries, models


def memory_parts(pid: int | str = "self") -> MemoryParts:
    """Where process `pid`'s resident memory lies (Linux). A thread arena's region is told by its shape: anonymous
    mappings that start on a 64 MiB boundary and fill exactly 64 MiB (the part in use, then the part reserved)."""
    mappings: list[tuple[int, int, str, float]] = []  # start, end, path, resident MB
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head[0].endswith(":"):  # a mapping's first line: "start-end perms offset dev inode [path]"
            start, end = (int(x, 16) for x in head[0].split("-"))
            mappings.append((start, end, head[5] if len(head) > 5 else "", 0.0))
        elif head[0] == "Rss:" and mappings:
            start, end, path, _ = mappings[-1]
            mappings[-1] = (start, end, path, int(head[1]) / 1024)
    parts = MemoryParts()
    i = 0
    while i < len(mappings):
        start, end, path, rss_mb = mappings[i]
        if not path and start % ARENA_BYTES == 0:
            j, reach = i, end  # the anonymous mappings that follow without a gap, within this 64 MiB
            while j + 1 < len(mappings) and not mappings[j + 1][2] and mappings[j + 1][0] == reach \
                    and mappings[j + 1][1] <= start + ARENA_BYTES:
                j, reach = j + 1, mappings[j + 1][1]
            if reach == start + ARENA_BYTES:
                parts.arenas_mb += sum(m[3] for m in mappings[i:j + 1])
                i = j + 1
                continue
        if path == "[heap]":
            parts.heap_mb += rss_mb
        elif path.startswith("/"):
            parts.files_mb += rss_mb
        else:
            parts.anon_mb += rss_mb  # blocks malloc maps on their own, thread stacks, Python's arenas, [stack]
        i += 1
    return parts


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc 2.33 and later): every field a size_t."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_in_use_bytes() -> int | None:
    """Bytes malloc has handed out and not had back, in its arenas and in the blocks it maps on their own
    (`mallinfo2`); None on other C libraries and glibc before 2.33. It walks every arena's free lists, each arena
    locked in turn: a few milliseconds, for a scrape, not for every frame."""
    libc = _glibc()
    if libc is None:
        return None
    try:
        mallinfo2 = libc.mallinfo2
    except AttributeError:  # glibc before 2.33
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


class HeapTrimmer:
    """Hands the heap's free pages back every `interval_s` (`malloc_trim(0)` on a worker thread), counting the
    trims, the resident bytes they gave back and the time they took (each arena is locked while it is trimmed)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.trims = 0
        self.released_bytes = 0
        self.trim_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def trim(self) -> int:
        """One trim now; the resident bytes it gave back (0 where nothing was, or on other C libraries)."""
        libc = _glibc()
        if libc is None:
            return 0
        before, started = resident_bytes(), time.perf_counter()
        libc.malloc_trim(ctypes.c_size_t(0))
        self.trim_s += time.perf_counter() - started
        released = max(0, before - resident_bytes())
        self.trims += 1
        self.released_bytes += released
        return released

    def start(self) -> None:
        if self.interval_s > 0 and _glibc() is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="heap-trim")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            released = await asyncio.to_thread(self.trim)
            log.debug("heap trim gave back %.1f MB", released / 1e6)

    def prometheus_text(self) -> str:
        in_use = malloc_in_use_bytes()
        in_use_text = "" if in_use is None else (
            "# HELP streamvis_heap_in_use_bytes Bytes malloc has handed out and not had back (live C memory).\n"
            "# TYPE streamvis_heap_in_use_bytes gauge\n"
            f"streamvis_heap_in_use_bytes {in_use}\n")
        return (
            "# HELP streamvis_resident_bytes The server's resident memory.\n"
            "# TYPE streamvis_resident_bytes gauge\n"
            f"streamvis_resident_bytes {resident_bytes()}\n"
            f"{in_use_text}"
            "# HELP streamvis_heap_trims_total Times the C heap's free pages were handed back.\n"
            "# TYPE streamvis_heap_trims_total counter\n"
            f"streamvis_heap_trims_total {self.trims}\n"
            "# HELP streamvis_heap_released_bytes_total Resident bytes those trims gave back.\n"
            "# TYPE streamvis_heap_released_bytes_total counter\n"
            f"streamvis_heap_released_bytes_total {self.released_bytes}\n"
            "# HELP streamvis_heap_trim_seconds_total Time those trims took.\n"
            "# TYPE streamvis_heap_trim_seconds_total counter\n"
            f"streamvis_heap_trim_seconds_total {self.trim_s:.6f}\n"
        )
