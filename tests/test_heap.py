"""The server's C heap: the pages threads freed handed back to the system on a timer, and the bytes malloc has
handed out, both counted in `/metrics`. The trim is checked in a process of its own, with threads that allocate as
the server's do: many at once, each in its own arena, freeing most of what they took. glibc only (the server does
nothing elsewhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_serve import STREAM, Server

from streamvis.server import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="malloc's arenas and malloc_trim are glibc's")

# 8 threads alive at once, each taking BLOCKS blocks of 60 kB (below malloc's mmap threshold: they come from the
# thread's arena) and freeing all but every 50th, so whole free pages lie between the blocks still in use
THREADS = """
import ctypes, json, sys, threading
from streamvis.server import heap
blocks_per_thread = int(sys.argv[1])
barrier, kept = threading.Barrier(8), []
def work():
    blocks = [bytearray(60_000) for _ in range(blocks_per_thread)]
    barrier.wait()
    kept.extend(blocks[::50])
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
report = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(report))  # glibc's own account: one <heap nr=...> per arena
libc.fclose(ctypes.c_void_p(report))
before = heap.memory_parts()
trimmer = heap.HeapTrimmer(0)
released = trimmer.trim()
print(json.dumps({"arenas": open(sys.argv[2]).read().count("<heap nr="),
                  "arenas_mb": before.arenas_mb, "heap_mb": before.heap_mb, "released_mb": released / 1e6,
                  "trims": trimmer.trims}))
"""


def run_threads(tmp_path: Path, blocks: int) -> dict[str, float]:
    """THREADS in a fresh process with glibc's arenas (no MALLOC_ARENA_MAX), `blocks` per thread."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    script = [sys.executable, "-c", textwrap.dedent(THREADS), str(blocks), str(tmp_path / "malloc-info.xml")]
    out = subprocess.run(script, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def test_a_trim_hands_the_pages_threads_freed_back(tmp_path) -> None:
    result = run_threads(tmp_path, blocks=500)
    assert result["arenas"] >= 5  # glibc's own: a new arena for each new thread, up to 8 per core
    # 8 x 30 MB taken, 8 x 0.6 MB kept: nearly all of it lay free in the arenas until the trim
    assert result["arenas_mb"] + result["heap_mb"] > 150
    assert result["released_mb"] > 100 and result["trims"] == 1


def test_malloc_counts_what_it_handed_out_and_had_back() -> None:
    before = heap.malloc_in_use_bytes()
    blocks = [bytearray(60_000) for _ in range(500)]  # 30 MB from the arena, below the mmap threshold
    during = heap.malloc_in_use_bytes()
    del blocks
    after = heap.malloc_in_use_bytes()
    assert before is not None and during is not None and after is not None
    assert during - before > 25e6 and during - after > 25e6


def test_serve_trims_on_its_timer_and_counts_it_in_metrics(person_video, models_dir) -> None:
    server = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop",
                    env={"STREAMVIS_HEAP_TRIM_S": "0.5"})
    try:
        server.wait_ready()
        deadline = time.monotonic() + 20
        while True:
            status, text = server.get("/metrics")
            values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                      if line.startswith(("streamvis_heap_", "streamvis_resident_bytes"))}
            if values.get("streamvis_heap_trims_total", 0) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and values["streamvis_heap_trims_total"] >= 2
        assert values["streamvis_heap_released_bytes_total"] >= 0
        assert values["streamvis_heap_trim_seconds_total"] > 0  # what it costs: benchmarks/soak.py
        assert values["streamvis_resident_bytes"] > 50e6  # the real server, models loaded
        assert 10e6 < values["streamvis_heap_in_use_bytes"] < values["streamvis_resident_bytes"]
        assert server.get("/streams")[0] == 200 and STREAM in server.get("/streams")[1]
    finally:
        server.stop()


def test_a_bad_heap_trim_setting_is_refused_before_serving(person_video, models_dir) -> None:
    server = Server("--source", str(person_video), "--models-dir", str(models_dir),
                    env={"STREAMVIS_HEAP_TRIM_S": "often"})
    out, _ = server.proc.communicate(timeout=60)
    assert server.proc.returncode != 0
    assert "STREAMVIS_HEAP_TRIM_S must be a number of seconds (0: never), got 'often'" in out
