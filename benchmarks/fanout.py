"""Fan-out: 1..50 viewers watching one stream directly, then the same numbers through Janus; server CPU, Janus
CPU and per-viewer fps, all in one run.

    sudo .venv/bin/python benchmarks/fanout.py [--viewers 1 10 25 50] [--seconds 10] [--models-dir ../shared/models]

It needs root and Debian's `janus` (`scripts/test.sh` installs it): everything runs in a network namespace of its
own (libnice ignores loopback), `streamvis serve` on 10.77.0.1 (the shared person video, looped, detect pipeline)
publishing into a Janus VideoRoom on 10.77.0.2 (`--publish people=janus+http://...`). For each viewer count, the
viewers first watch the server over WHEP ("direct"), then subscribe through Janus ("janus").

Viewers are aiortc peers in 4 worker processes. They receive and reassemble every frame but do not decode it
(a counting decoder stands in for H.264 decoding), so that 50 of them fit beside the server on 2 cores; per-viewer
fps is frames received per second in the measured window; stream fps is the server's output rate (the most a
viewer can get: detection on 2 cores sets it). CPU is process CPU time over wall time in that window
(100% = one core), for the server and for Janus. The baseline is the same run's 1 direct viewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from live import cpu_seconds  # noqa: E402
from results import save_table  # noqa: E402

from streamvis.testing import sfu  # noqa: E402

STREAM, ROOM = "people", 4343
WORKERS = 4


# -- viewers (worker processes) ------------------------------------------------------------------------------------
def _count_instead_of_decoding() -> None:
    """Frames are reassembled from RTP as usual, then counted instead of decoded (a tiny stand-in frame each)."""
    import av
    from aiortc import rtcrtpreceiver

    class CountingDecoder:
        def decode(self, encoded_frame: Any) -> list[av.VideoFrame]:
            frame = av.VideoFrame(16, 16, "yuv420p")
            frame.pts = encoded_frame.timestamp
            return [frame]

    rtcrtpreceiver.get_decoder = lambda codec: CountingDecoder()  # type: ignore[assignment]


async def _viewers(mode: str, count: int, t0: float, t1: float) -> list[dict[str, float]]:
    from streamvis_client import watch, watch_janus

    async def one() -> dict[str, float]:
        stamps: list[float] = []
        started = time.time()

        def on_frame(_frame: Any, _n: int) -> None:
            stamps.append(time.time())

        timeout = t1 - started + 1
        if mode == "direct":
            await watch(f"http://{sfu.SERVER_IP}:{sfu.SERVER_PORT}", STREAM, 10**9, timeout, token="t",
                        on_frame=on_frame, keep_messages=False)
        else:
            await watch_janus(sfu.janus_room(ROOM), STREAM, 10**9, timeout, on_frame=on_frame,
                              keep_messages=False)
        in_window = sum(1 for s in stamps if t0 <= s <= t1)
        return {"fps": in_window / (t1 - t0), "first_frame_s": (stamps[0] - started) if stamps else -1.0}

    return list(await asyncio.gather(*(one() for _ in range(count))))


def worker(mode: str, count: int, t0: float, t1: float) -> None:
    _count_instead_of_decoding()
    print(json.dumps(asyncio.run(_viewers(mode, count, t0, t1))), flush=True)


# -- the run (in the namespace) -----------------------------------------------------------------------------------
def _child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _stream_fps() -> float:
    """The stream's output rate as the server reports it (what every viewer could get at most)."""
    request = urllib.request.Request(f"http://{sfu.SERVER_IP}:{sfu.SERVER_PORT}/streams",
                                     headers={"Authorization": "Bearer t"})
    with urllib.request.urlopen(request, timeout=5) as response:
        streams = json.load(response)["streams"]
    return float(next(s for s in streams if s["id"] == STREAM)["stats"]["fps_out"])


def measure(mode: str, viewers: int, seconds: float, server_pid: int, janus_pid: int) -> dict[str, Any]:
    connect_s = 4.0 + 0.15 * viewers  # time for every viewer to connect and get a keyframe
    t0 = time.time() + connect_s
    t1 = t0 + seconds
    shares = [viewers // WORKERS + (1 if i < viewers % WORKERS else 0) for i in range(WORKERS)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", mode, str(n), str(t0), str(t1)],
                              stdout=subprocess.PIPE, text=True) for n in shares if n]
    time.sleep(max(0.0, t0 - time.time()))
    server0, janus0, wall0 = cpu_seconds(server_pid), cpu_seconds(janus_pid), time.monotonic()
    time.sleep(max(0.0, t1 - time.time()))
    server1, janus1, wall1 = cpu_seconds(server_pid), cpu_seconds(janus_pid), time.monotonic()
    stream_fps = _stream_fps()
    results: list[dict[str, float]] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.startswith("[")]
        results += json.loads(lines[-1]) if lines else []
    fps = [r["fps"] for r in results]
    first = [r["first_frame_s"] for r in results if r["first_frame_s"] >= 0]
    time.sleep(2)  # let the hang-ups settle before the next row
    return {"mode": mode, "viewers": viewers, "watching": sum(1 for f in fps if f > 0),
            "stream_fps": stream_fps, "fps_median": statistics.median(fps) if fps else 0.0,
            "fps_min": min(fps) if fps else 0.0,
            "first_frame_s": statistics.median(first) if first else -1.0,
            "server_cpu": (server1 - server0) / (wall1 - wall0) * 100,
            "janus_cpu": (janus1 - janus0) / (wall1 - wall0) * 100}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        source = logs / f"{STREAM}.mp4"
        source.symlink_to(Path(args.video).resolve())
        serve_args = ["--source", str(source), "--loop", "--models-dir", str(args.models_dir),
                      "--publish", f"{STREAM}={sfu.janus_room(ROOM)}"]
        with sfu.janus(logs / "janus.log") as janus_script, \
                sfu.streamvis_server(logs / "serve.log", *serve_args) as server:
            janus_pid = next(iter(_child_pids(janus_script.pid)), janus_script.pid)
            time.sleep(3)  # the upstream into Janus is up
            rows = []
            for viewers in args.viewers:
                for mode in ("direct", "janus"):
                    rows.append(measure(mode, viewers, args.seconds, server.pid, janus_pid))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    base = next(r for r in rows if r["mode"] == "direct" and r["viewers"] == min(args.viewers))
    table = Table(title=f"fan-out: {STREAM} (768x432, detect pipeline), {os.cpu_count()} CPUs, "
                        f"{args.seconds:g} s per row; baseline: {base['viewers']} direct viewer")
    for column in ("path", "viewers", "watching", "stream fps", "fps per viewer (median / min)", "first frame s",
                   "server CPU %", "x baseline", "Janus CPU %"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["mode"], str(r["viewers"]), str(r["watching"]), f"{r['stream_fps']:.1f}",
                      f"{r['fps_median']:.1f} / {r['fps_min']:.1f}",
                      f"{r['first_frame_s']:.2f}", f"{r['server_cpu']:.0f}",
                      f"{r['server_cpu'] / base['server_cpu']:.2f}", f"{r['janus_cpu']:.0f}" if r["mode"] == "janus"
                      else "-")
    Console(width=140).print(table)
    save_table("fanout", table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 10, 25, 50])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--models-dir", type=Path,
                        default=Path(os.environ.get("STREAMVIS_MODELS_DIR", ROOT.parent / "shared" / "models")))
    parser.add_argument("--video", type=Path,
                        default=ROOT.parent / "shared" / "media" / "videos" / "intel_one-by-one-person-detection.mp4")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mode, count, t0, t1 = args.worker
        worker(mode, int(count), float(t0), float(t1))
        return
    if not sfu.in_namespace():
        reason = sfu.missing()
        if reason:
            sys.exit(f"error: the fan-out benchmark {reason}")
        os.execvp("unshare", ["unshare", "-n", str(ROOT / "scripts" / "in_netns.sh"), "env",
                              f"{sfu.NETNS_ENV}=1", sys.executable, *sys.argv])
    report(run(args), args)


if __name__ == "__main__":
    main()
