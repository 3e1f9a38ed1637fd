"""Soak: many cameras for a long time, some of them failing, viewers coming and going; does anything grow?

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--cameras 8] [--restart-every-s 180] [--server-env K=V]
        [--compare-env K=V]

Real RTSP cameras (GStreamer's rtsp-server on 127.0.0.1, `tests/rtsp_server.py`, the shared videos by packet copy;
half of them a still room) into one `streamvis serve -p detect --record DIR` with today's defaults. Two cameras
run in servers of their own that are killed and started again on the same port every `--restart-every-s`
(staggered), so their streams drop and reconnect; every camera's file also ends and is played again (a clip of
14 to 140 s), as a camera that drops. A Python WebRTC viewer (`clients/python`) joins a stream every 40 s and
watches for 60 s (one or two at a time). Every 30 s: the server's RSS, threads and open files, frames out, frames
dropped by place and recording segments, and where the resident memory lies (`/proc/PID/smaps`: glibc's main
heap, its per-thread arenas, other anonymous memory, mapped files). The table shows a sample every few minutes
(the .json keeps them all); the summary compares the first sample after the warm-up with the last, fits RSS's trend
over the second half and gives its band in each quarter of the run, and says whether RSS is flat by a criterion
fixed before any run (`rss_verdict`): what grows is a leak; drops anywhere but the counted, newest-wins places
would be a bug (there are no others: each queue names its policy).

`--compare-env K=V` runs a second server beside the first, on the same cameras, with the same viewers at the same
moments, in the environment given: a baseline in the same run (for the C heap: `STREAMVIS_HEAP_TRIM_S=0` gives
glibc's own defaults; `MALLOC_ARENA_MAX=2` caps the arenas). Two servers share the cores, so their CPU and drops
are those of a box twice as loaded; compare their memory, not their drops, with a run of one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from density import BUSY, make_quiet_clip, start_cameras
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
from results import save_table  # noqa: E402
from serving import cpu_seconds, free_port, get_json, rss_mb, stop  # noqa: E402
from streamvis_client import watch  # noqa: E402

from streamvis import env  # noqa: E402
from streamvis.server.aiortc_compat import use_loopback_ice  # noqa: E402
from streamvis.server.heap import memory_parts  # noqa: E402

SAMPLE_EVERY_S = 30.0
WARM_UP_S = 60.0
FLAT_TREND_MB_PER_H = 5.0  # at most this fitted rise over the second half ...
FLAT_LAST_QUARTER = 1.02  # ... and the last quarter's highest RSS at most 2% above the second quarter's
VIEWER_EVERY_S = 40.0
VIEWER_WATCH_S = 60.0


def serving_pid(pid: int) -> int:
    """`pid`, or the `streamvis serve` a wrapper (heaptrack, ...) with that pid started."""
    for child in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((child / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"serve" in (child / "cmdline").read_bytes():
                return int(child.name)
        except (OSError, ValueError, IndexError):
            continue
    return pid


def proc_counts(pid: int) -> tuple[int, int]:
    """Threads and open file descriptors of process `pid`."""
    threads = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


class FlakyCamera:
    """One camera in an rtsp-server of its own, killed and started again on the same port."""

    def __init__(self, clip: Path, name: str) -> None:
        self.clip, self.name, self.port = clip, name, free_port()
        self.process: subprocess.Popen[str] | None = None
        self.restarts = 0

    def start(self) -> str:
        args = ["/usr/bin/python3", str(ROOT / "tests" / "rtsp_server.py"), "--port", str(self.port),
                "--file", f"{self.name}={self.clip}"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"camera {self.name} did not start on port {self.port}: {line!r}")
        return line.split()[-1]

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        time.sleep(5.0)  # down for a few seconds, as a rebooting camera
        self.start()
        self.restarts += 1


async def viewers(url: str, streams: list[str], until: float, counts: dict[str, int]) -> None:
    rng = random.Random(0)
    tasks: set[asyncio.Task[object]] = set()

    def left(task: asyncio.Task[object]) -> None:
        tasks.discard(task)
        report = None if task.cancelled() or task.exception() is not None else task.result()
        counts["frames"] += getattr(report, "frames", 0)
        counts["failed"] += report is None

    while time.monotonic() < until - VIEWER_WATCH_S:
        stream = rng.choice(streams)
        task = asyncio.create_task(watch(url, stream, frames=10**9, timeout_s=VIEWER_WATCH_S, keep_messages=False))
        tasks.add(task)
        task.add_done_callback(left)
        counts["joined"] += 1
        await asyncio.sleep(VIEWER_EVERY_S)
    await asyncio.gather(*tasks, return_exceptions=True)


class SoakServer:
    """One `streamvis serve` of the soak, with the environment it was given, and its samples."""

    def __init__(self, label: str, env_vars: list[str], urls: list[str], models_dir: str, record: Path,
                 wrapper: list[str]) -> None:
        self.label, self.record = label, record
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        exe = str(Path(sys.executable).parent / "streamvis")
        self.process = subprocess.Popen(
            [*wrapper, exe, "serve", *[a for u in urls for a in ("--source", u)], "-p", "detect", "--port",
             str(port), "--models-dir", models_dir, "--record", str(record), "--record-segment-s", "120"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **dict(kv.split("=", 1) for kv in env_vars)})
        self.pid = self.process.pid  # under a wrapper: the server it started (`wait_ready`)
        self.samples: list[dict[str, float | str]] = []
        self.counts = {"joined": 0, "frames": 0, "failed": 0}
        self.cpu0 = self.wall0 = 0.0

    def wait_ready(self, cameras: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if len(get_json(self.url + "/healthz")["streams"]) == cameras:
                    self.pid = serving_pid(self.process.pid)
                    return
            except OSError:
                pass
            time.sleep(1.0)

    def start_clock(self) -> None:
        self.cpu0, self.wall0 = cpu_seconds(self.pid), time.monotonic()

    def take_sample(self, elapsed_s: float) -> dict[str, float | str]:
        self.samples.append(sample(self.pid, self.url, self.record, elapsed_s, self.cpu0, self.wall0))
        self.start_clock()
        return self.samples[-1]

    def summary(self, alive: bool, restarts: int) -> str:
        first, last, samples = self.samples[0], self.samples[-1], self.samples
        return (f"{self.label}: alive at the end: {alive}. RSS trend over the run's second half: "
                f"{rss_trend_mb_per_h(samples):+.0f} MB an hour; by quarter of the run, {rss_by_quarter(samples)}; "
                f"{rss_verdict(samples)}. "
                f"From minute {first['minute']} to "
                f"{last['minute']}: RSS {first['rss_mb']} -> {last['rss_mb']} MB "
                f"(max {max(float(s['rss_mb']) for s in samples):.0f}; "
                f"heap / arenas / other anon / files {first['memory']} -> {last['memory']}; malloc in use "
                f"{first['in_use_mb']} -> {last['in_use_mb']} MB, by quarter {in_use_by_quarter(samples)}), "
                f"threads {first['threads']} -> {last['threads']} (max {max(int(s['threads']) for s in samples)}), "
                f"open files {first['fds']} -> {last['fds']} (max {max(int(s['fds']) for s in samples)}); "
                f"camera restarts {restarts}; viewers joined {self.counts['joined']} ({self.counts['failed']} "
                f"failed), {self.counts['frames']} frames received; {last['trims']}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--restart-every-s", type=float, default=180.0)
    parser.add_argument("--server-env", action="append", default=[], metavar="K=V",
                        help="an environment variable for the server (e.g. MALLOC_ARENA_MAX=2); repeatable")
    parser.add_argument("--compare-env", action="append", default=None, metavar="K=V",
                        help="run a second server beside it, on the same cameras and viewers, with this environment "
                             "(the baseline; repeatable), e.g. STREAMVIS_HEAP_TRIM_S=0")
    parser.add_argument("--server-wrapper", default="", metavar="CMD",
                        help="a command the (first) server runs under, e.g. 'heaptrack -o /tmp/serve'")
    parser.add_argument("--models-dir", default=env.models_dir() or ROOT.parent / "shared/models")
    args = parser.parse_args()
    use_loopback_ice(only=True)
    console = Console(width=220)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        quiet = make_quiet_clip(Path(tmp) / "quiet-room.mp4", seconds=14.0)
        clips = [quiet if i >= args.cameras // 2 else BUSY[i % len(BUSY)] for i in range(args.cameras)]
        steady_server, urls = start_cameras(clips[2:])
        flaky = [FlakyCamera(clips[i], f"flaky{i}") for i in range(2)]
        urls = [camera.start() for camera in flaky] + urls
        setups = [(" ".join(args.server_env) or "defaults", args.server_env)]
        if args.compare_env is not None:
            setups.append((" ".join(args.compare_env) or "defaults", args.compare_env))
        servers = [SoakServer(label, env_vars, urls, str(args.models_dir), Path(tmp) / f"recordings{i}",
                              shlex.split(args.server_wrapper) if i == 0 else [])
                   for i, (label, env_vars) in enumerate(setups)]
        try:
            for server in servers:
                server.wait_ready(args.cameras)
            start = time.monotonic()
            until = start + args.minutes * 60
            loop_threads = [_run_viewers_in_thread(server, until) for server in servers]
            next_restart = [start + args.restart_every_s * (0.5 + i / 2) for i in range(len(flaky))]
            next_sample = start + WARM_UP_S
            for server in servers:
                server.start_clock()
            while time.monotonic() < until:
                now = time.monotonic()
                for i, camera in enumerate(flaky):
                    if now >= next_restart[i]:
                        camera.restart()
                        next_restart[i] = time.monotonic() + args.restart_every_s
                if now >= next_sample:
                    for server in servers:
                        last = server.take_sample(now - start)
                        print(f"{last['minute']} min, {server.label}: RSS {last['rss_mb']} MB ({last['memory']}; "
                              f"malloc in use {last['in_use_mb']}), "
                              f"{last['threads']} threads, {last['fds']} files, CPU {last['cpu']}%, drops "
                              f"{last['drops']}; {last['trims']}", flush=True)
                    next_sample += SAMPLE_EVERY_S
                time.sleep(0.5)
            for thread in loop_threads:
                thread.join(timeout=VIEWER_WATCH_S + 30)
            alive = [server.process.poll() is None for server in servers]
        finally:
            for server in servers:
                if server.pid != server.process.pid:  # a wrapper waits for the server: end the server first
                    os.kill(server.pid, signal.SIGTERM)
                stop(server.process, timeout_s=60)
            steady_server.kill()
            for camera in flaky:
                camera.kill()
    compared = f"; beside a server with {servers[1].label}" if len(servers) > 1 else ""
    table = Table(title=f"Soak: {args.cameras} RTSP cameras ({args.cameras // 2} quiet, 2 killed and restarted "
                        f"every {args.restart_every_s:g} s), --record, viewers joining and leaving, "
                        f"{args.minutes:g} min, server with {servers[0].label}{compared}")
    for column in ("minute", "server", "RSS MB", "heap / arenas / other anon / files MB", "malloc in use MB",
                   "threads", "open files",
                   "CPU %", "frames out", "drops (place: frames)", "segments", "heap trims"):
        table.add_column(column, justify="right")
    samples = servers[0].samples
    step = max(1, len(samples) // 10)
    rows = list(range(0, len(samples), step)) + ([len(samples) - 1] if samples and (len(samples) - 1) % step else [])
    for index in rows:
        for server in servers:
            if index < len(server.samples):
                row = server.samples[index]
                table.add_row(*(str(row[k]) for k in ("minute",)), server.label,
                              *(str(row[k]) for k in ("rss_mb", "memory", "in_use_mb", "threads", "fds", "cpu",
                                                      "frames_out",
                                                      "drops", "segments", "trims")))
    console.print(table)
    restarts = sum(c.restarts for c in flaky)
    notes = " ".join(server.summary(ok, restarts) for server, ok in zip(servers, alive, strict=True))
    notes += " Drops are counted totals since the start."
    console.print(notes)
    save_table("soak" if len(servers) == 1 else "soak-compare", table, notes=notes,
               data={"samples": {server.label: server.samples for server in servers}})


def sample(pid: int, url: str, record: Path, elapsed_s: float, cpu0: float, wall0: float) -> dict[str, float | str]:
    threads, fds = proc_counts(pid)
    streams = get_json(url + "/streams")["streams"]
    drops: dict[str, int] = {}
    for s in streams:
        for place, count in s["stats"]["drops"].items():
            drops[place] = drops.get(place, 0) + count
    cpu = (cpu_seconds(pid) - cpu0) / max(1e-6, time.monotonic() - wall0) * 100
    parts = memory_parts(pid)
    memory = " / ".join(f"{mb:.0f}" for mb in (parts.heap_mb, parts.arenas_mb, parts.anon_mb, parts.files_mb))
    heap = heap_metrics(url)
    in_use = heap.get("streamvis_heap_in_use_bytes")
    trims = (f"{heap.get('streamvis_heap_trims_total', 0):.0f} trims gave back "
             f"{heap.get('streamvis_heap_released_bytes_total', 0) / 1e6:.0f} MB in "
             f"{heap.get('streamvis_heap_trim_seconds_total', 0) * 1e3:.0f} ms")
    return {"minute": f"{elapsed_s / 60:.1f}", "rss_mb": f"{rss_mb(pid):.0f}", "memory": memory,
            "in_use_mb": "-" if in_use is None else f"{in_use / 1e6:.0f}",
            "threads": threads, "fds": fds, "cpu": f"{cpu:.0f}",
            "frames_out": sum(s["stats"]["frames_out"] for s in streams),
            "drops": ", ".join(f"{k}: {v}" for k, v in sorted(drops.items()) if v) or "0",
            "segments": len(list(record.rglob("*.mp4"))), "trims": trims}


def rss_trend_mb_per_h(samples: list[dict[str, float | str]]) -> float:
    """The least-squares slope of RSS over the second half of the samples (after the warm-up; a trimmed heap's
    RSS goes up and down between trims, so two samples alone say little), in MB an hour."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return float("nan")
    minutes = [float(s["minute"]) for s in half]
    rss = [float(s["rss_mb"]) for s in half]
    mean_t, mean_r = sum(minutes) / len(minutes), sum(rss) / len(rss)
    spread = sum((t - mean_t) ** 2 for t in minutes)
    return 60 * sum((t - mean_t) * (r - mean_r) for t, r in zip(minutes, rss, strict=True)) / spread


def rss_by_quarter(samples: list[dict[str, float | str]]) -> str:
    """RSS in each quarter of the samples, mean (min-max) MB: memory that levels off shows the same band in the
    last two quarters, memory that grows a higher one in each."""
    return "RSS mean (min-max) " + _by_quarter([float(s["rss_mb"]) for s in samples])


def in_use_by_quarter(samples: list[dict[str, float | str]]) -> str:
    """What malloc had handed out, by quarter as `rss_by_quarter`: level while RSS rises is fragmentation, rising
    with it a leak ("-" where the server does not say)."""
    in_use = [float(s["in_use_mb"]) for s in samples if s.get("in_use_mb", "-") != "-"]
    return _by_quarter(in_use) if in_use else "-"


def _by_quarter(mb: list[float]) -> str:
    quarters = [mb[len(mb) * q // 4:len(mb) * (q + 1) // 4] for q in range(4)]
    return ", ".join(f"{sum(q) / len(q):.0f} ({min(q):.0f}-{max(q):.0f})" for q in quarters if q) + " MB"


def rss_verdict(samples: list[dict[str, float | str]]) -> str:
    """Whether RSS is flat: a fitted trend over the second half of at most FLAT_TREND_MB_PER_H, and a last
    quarter whose highest sample is at most FLAT_LAST_QUARTER times the second quarter's (a trimmed heap goes up
    and down between trims: its highs, not its lows, are what a box must hold). Says which part fails."""
    rss = [float(s["rss_mb"]) for s in samples]
    if len(rss) < 8:
        return "too short a run to call RSS flat"
    trend = rss_trend_mb_per_h(samples)
    second, last = max(rss[len(rss) // 4:len(rss) // 2]), max(rss[len(rss) * 3 // 4:])
    failed = ([f"trend {trend:+.0f} > {FLAT_TREND_MB_PER_H:.0f} MB an hour"] if trend > FLAT_TREND_MB_PER_H else []) \
        + ([f"last quarter's highest {last:.0f} MB > {FLAT_LAST_QUARTER:.2f} x {second:.0f}"]
           if last > FLAT_LAST_QUARTER * second else [])
    return "RSS flat" if not failed else "RSS not flat (" + "; ".join(failed) + ")"


def heap_metrics(url: str) -> dict[str, float]:
    """The server's heap counters from `/metrics` (none from a server before they existed)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith("streamvis_heap_")}


def _run_viewers_in_thread(server: SoakServer, until: float) -> threading.Thread:
    streams = [s["id"] for s in get_json(server.url + "/streams")["streams"]]
    thread = threading.Thread(target=lambda: asyncio.run(viewers(server.url, streams, until, server.counts)),
                              daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    main()
