"""Many cameras on one small box: N real RTSP cameras into one `streamvis serve -p detect`, as before (motion
gating off, each stream running the detector from its own thread) and with today's defaults (gating on, every
stream's keyframes through one queue), in one run.

    .venv/bin/python benchmarks/density.py [--cameras 1 4 8 16 32] [--seconds 30] [--quick]

The cameras are GStreamer's rtsp-server on 127.0.0.1 (`tests/rtsp_server.py`, system Python with `gi`) serving
H.264 MP4s as they are (packets copied, no re-encoding; a camera whose file ends drops, and streamvis
reconnects, as to a real camera): busy cameras replay the shared person and car videos (768x432, 10 and 12.5
fps); quiet cameras replay a still scene (the person video's empty room with sensor-like noise, 768x432 at 10
fps, encoded once here). Half the cameras are quiet, three quarters at 32. Per row, after a warm-up: detector
runs per second per camera (busy and quiet apart), gated keyframes per second, p95 from a frame's decode to its
result (the worst camera's), frames dropped per place, the server's CPU (200% = both of 2 cores) and RSS.
Rows with recording follow (at 8 and 16 cameras: the cameras' packets copied, `--record`, against the annotated
video re-encoded, `--record-annotated`, as `--record` did before), with one Python WebRTC viewer per 4 cameras
at 8, gating without the queue at 16, and at 16 (half quiet, then all busy) the queue running one keyframe at a
time (`batching.cpu_workers=1`, the default before one run per core). The NVR rows use `examples/nvr.sh`'s
settings (`--record`, `detector.fps` 5), the setting the issue's targets describe, at 16 and 32 cameras and at
`detector.fps` 3, at 16 and 32 also with YOLOX letterboxed into its square input as before `detector.fit_input`,
each with and without processing only what is detected (`source.skip_unneeded_frames`: while
nobody watches, only `detector.fps` frames a second passed on, and the frames no other frame refers to left
undecoded where the rest keep up); frames decoded and frames processed a second are both given. A busy camera's
detector runs are also given per second of motion (its runs over the seconds in which its motion gating saw
something move, from the `moving_frames` counter): what the target "every camera with motion detected >= 5 times a
second" asks. Frames nobody watches or records are not drawn in any row.
Targets (issue 29, 2-core AMD EPYC): a quiet camera <= 3% of a core; every busy camera detected >= 5 times a
second; p95 <= 100 ms; no drops but by policy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
from results import save_table  # noqa: E402
from serving import busy_cores, cpu_seconds, end_busy, free_port, get_json, rss_mb, stop  # noqa: E402
from streamvis_client import watch  # noqa: E402

from streamvis import env  # noqa: E402
from streamvis.server.aiortc_compat import use_loopback_ice  # noqa: E402

VIDEOS = ROOT.parent / "shared" / "media" / "videos"
BUSY = [VIDEOS / "intel_one-by-one-person-detection.mp4", VIDEOS / "intel_car-detection.mp4"]
RTSP_SERVER = ROOT / "tests" / "rtsp_server.py"
WARM_UP_S = 8.0
# today's defaults before motion gating and the one detector queue: every frame offered to the detector, each
# stream running it from its own thread
BEFORE = ["--set", "motion.enabled=false", "--set", "batching.enabled=false"]


def make_quiet_clip(path: Path, seconds: float = 60.0, fps: int = 10) -> Path:
    """A still camera: the person video's first frame (an empty room), with a little noise on every frame."""
    with av.open(str(BUSY[0])) as source:
        still = next(source.decode(video=0)).to_ndarray(format="bgr24")
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = still.shape[1], still.shape[0], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * fps)}
        for _ in range(int(seconds * fps)):
            noisy = np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(noisy, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@dataclass
class Row:
    label: str
    cameras: int
    quiet: int
    extra: list[str] = field(default_factory=list)
    viewers: int = 0
    busy: int = 0  # cores other processes keep busy meanwhile


@dataclass
class Measured:
    busy_runs_per_s: list[float]
    busy_runs_per_motion_s: list[float]  # detector runs per second of the camera's frames with motion
    quiet_runs_per_s: list[float]
    gated_per_s: float
    p95_ms: float
    drops: dict[str, int]
    cpu_percent: float
    rss_mb: float
    cameras: int
    decoded_per_s: float  # frames decoded a second, per camera (mean)
    processed_per_s: float  # frames passed on to the pipeline a second, per camera (mean)
    viewer_fps: float | None = None


def start_cameras(clips: list[Path]) -> tuple[subprocess.Popen, list[str]]:
    port = free_port()
    args = ["/usr/bin/python3", str(RTSP_SERVER), "--port", str(port)]
    for i, clip in enumerate(clips):
        args += ["--file", f"cam{i}={clip}"]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout is not None
    urls = [server.stdout.readline().split()[-1] for _ in clips]
    if not all(u.startswith("rtsp://") for u in urls):
        server.kill()
        raise SystemExit("the RTSP cameras did not start (needs python3-gi and gir1.2-gst-rtsp-server-1.0)")
    return server, urls


def measure_row(row: Row, quiet_clip: Path, args: argparse.Namespace) -> Measured:
    clips = [quiet_clip if i >= row.cameras - row.quiet else BUSY[i % len(BUSY)] for i in range(row.cameras)]
    cameras, urls = start_cameras(clips)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sources = [a for u in urls for a in ("--source", u)]
    server = subprocess.Popen([str(Path(sys.executable).parent / "streamvis"), "serve", *sources, "-p", "detect",
                               "--port", str(port), "--models-dir", str(args.models_dir), *row.extra],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    burners = busy_cores(row.busy)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                statuses = get_json(url + "/healthz")["streams"]
                if len(statuses) == row.cameras and all(s == "live" for s in statuses.values()):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(WARM_UP_S)
        before = get_json(url + "/streams")["streams"]
        cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
        viewer_fps = None
        if row.viewers:
            ids = [s["id"] for s in before]
            reports = asyncio.run(_watch_all(url, [ids[i * row.cameras // row.viewers]
                                                   for i in range(row.viewers)], args.seconds))
            viewer_fps = min(r.fps for r in reports)
        else:
            time.sleep(args.seconds)
        wall = time.monotonic() - wall0
        cpu = (cpu_seconds(server.pid) - cpu0) / wall * 100
        memory = rss_mb(server.pid)
        after = get_json(url + "/streams")["streams"]
    finally:
        end_busy(burners)
        stop(server)
        cameras.kill()
        cameras.wait()
    runs = [(a["stats"]["keyframes"] - b["stats"]["keyframes"]) / wall for a, b in zip(after, before, strict=True)]
    per_motion_s = []  # runs / seconds of motion (moving frames / the camera's frame rate); none without motion
    for a, b, rate in zip(after, before, runs, strict=True):
        moving = a["stats"].get("moving_frames", 0) - b["stats"].get("moving_frames", 0)
        frames = a["stats"]["frames_in"] - b["stats"]["frames_in"]
        per_motion_s.append(rate * frames / moving if moving > 0 and frames > 0 else None)
    gated = sum(a["stats"]["gated_keyframes"] - b["stats"]["gated_keyframes"]
                for a, b in zip(after, before, strict=True)) / wall
    drops: dict[str, int] = {}
    for a, b in zip(after, before, strict=True):
        for place, count in a["stats"]["drops"].items():
            drops[place] = drops.get(place, 0) + count - b["stats"]["drops"].get(place, 0)
    p95 = max((s["stats"]["latency_ms"].get("frame_to_result", {}).get("p95", float("nan")) for s in after),
              default=float("nan"))
    busy_n = row.cameras - row.quiet

    def per_camera_s(*counters: str) -> float:
        return sum(a["stats"].get(c, 0) - b["stats"].get(c, 0) for a, b in zip(after, before, strict=True)
                   for c in counters) / wall / row.cameras

    return Measured(runs[:busy_n], [v for v in per_motion_s[:busy_n] if v is not None], runs[busy_n:],
                    gated, p95, drops, cpu, memory, row.cameras, per_camera_s("frames_in", "past_rate_frames"),
                    per_camera_s("frames_in"), viewer_fps)


async def _watch_all(url: str, streams: list[str], seconds: float) -> list:
    return await asyncio.gather(*(watch(url, stream, frames=10**9, timeout_s=seconds, keep_messages=False)
                                  for stream in streams))


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} (min {min(values):.1f})" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--models-dir", default=env.models_dir() or ROOT.parent / "shared/models")
    parser.add_argument("--quick", action="store_true", help="before and default at the camera counts only")
    parser.add_argument("--recording-only", action="store_true",
                        help="the recording rows alone (recorded as density-recording)")
    parser.add_argument("--busy-cores", type=int, default=0,
                        help="also the NVR rows at 16 and 32 cameras while other processes keep this many cores "
                             "busy: a slower box (its CPU column is then the server's share, not its need)")
    parser.add_argument("--nvr-only", action="store_true",
                        help="the rows with examples/nvr.sh's settings alone (recorded as density-nvr)")
    args = parser.parse_args()
    use_loopback_ice(only=True)
    rows: list[Row] = []
    for n in args.cameras:
        quiet = n * 3 // 4 if n >= 32 else n // 2
        rows.append(Row("before: gating off, a detector per stream", n, quiet, BEFORE))
        rows.append(Row("default: gating on, one detector queue", n, quiet))
    record = tempfile.mkdtemp(prefix="density-record-")
    recording_rows = [
        Row("before, --record (annotated, re-encoded)", 8, 4, [*BEFORE, "--record", record, "--record-annotated"]),
        Row("default, --record-annotated", 8, 4, ["--record", record, "--record-annotated"]),
        Row("default, --record (the cameras' packets copied)", 8, 4, ["--record", record]),
        Row("before, --record (annotated, re-encoded)", 16, 8, [*BEFORE, "--record", record, "--record-annotated"]),
        Row("default, --record (the cameras' packets copied)", 16, 8, ["--record", record]),
    ]
    nvr = ["--record", record, "--set", "detector.fps=5"]  # examples/nvr.sh: recorded, detected 5 times a second
    every_frame = [*nvr, "--set", "source.skip_unneeded_frames=false"]  # before: every frame decoded and processed
    square = [*nvr, "--set", "detector.fit_input=false"]  # before: YOLOX letterboxed into its square input
    nvr_rows = [
        Row("NVR (examples/nvr.sh: --record, detector.fps 5), every frame processed (before)", 16, 8, every_frame),
        Row("NVR, the detector's square input (before)", 16, 8, square),
        Row("NVR (examples/nvr.sh: --record, detector.fps 5)", 16, 8, nvr),
        Row("NVR (examples/nvr.sh: --record, detector.fps 5), every frame processed (before)", 32, 24, every_frame),
        Row("NVR, the detector's square input (before)", 32, 24, square),
        Row("NVR (examples/nvr.sh: --record, detector.fps 5)", 32, 24, nvr),
        Row("NVR, busy cameras only", 16, 0, nvr),
        Row("NVR, quiet cameras only, every frame processed (before)", 8, 8, every_frame),
        Row("NVR, quiet cameras only", 8, 8, nvr),
        # detector.fps 3: under the 4 frames a second the person video's decoder cannot leave out (IBBP at 10 fps),
        # so its non-reference frames are not decoded; the car video (no B-frames) is decoded whole either way
        Row("NVR at detector.fps 3, every frame processed (before)", 16, 8,
            [*nvr, "--set", "detector.fps=3", "--set", "source.skip_unneeded_frames=false"]),
        Row("NVR at detector.fps 3", 16, 8, [*nvr, "--set", "detector.fps=3"]),
    ]
    if args.busy_cores:
        nvr_rows += [Row(f"NVR (examples/nvr.sh), {args.busy_cores} core(s) busy elsewhere", n, quiet, nvr,
                         busy=args.busy_cores) for n, quiet in ((16, 8), (32, 24))]
    if args.recording_only:
        rows = recording_rows
    elif args.nvr_only:
        rows = nvr_rows
    elif not args.quick:
        for label, extra in (("quiet cameras only, before", BEFORE), ("quiet cameras only, default", [])):
            rows.append(Row(label, 8, 8, extra))
        rows += recording_rows + nvr_rows
        rows.append(Row("before, 1 viewer per 4 cameras", 8, 4, BEFORE, viewers=2))
        rows.append(Row("default, 1 viewer per 4 cameras", 8, 4, viewers=2))
        rows.append(Row("gating on, a detector per stream", 16, 8, ["--set", "batching.enabled=false"]))
        rows.append(Row("default, the queue one run at a time (before)", 16, 8, ["--set", "batching.cpu_workers=1"]))
        rows.append(Row("busy cameras only, default", 16, 0))
        rows.append(Row("busy cameras only, the queue one run at a time (before)", 16, 0,
                        ["--set", "batching.cpu_workers=1"]))
    with tempfile.TemporaryDirectory() as tmp:
        quiet_clip = make_quiet_clip(Path(tmp) / "quiet-room.mp4")
        table = Table(title=f"streamvis serve -p detect, N RTSP cameras (busy: the shared person and car videos; "
                            f"quiet: a still room), {os.cpu_count()} CPUs, {args.seconds:g} s per row")
        for column in ("setting", "cameras (quiet)", "detector runs/s, busy camera",
                       "busy camera: runs per second of motion", "quiet camera",
                       "gated keyframes/s", "frame to result p95 ms", "drops (place: frames)", "server CPU %",
                       "CPU % per camera", "frames decoded / processed a second per camera", "RSS MB",
                       "viewer fps (min)"):
            table.add_column(column, justify="left" if column == "setting" else "right")
        for row in rows:
            m = measure_row(row, quiet_clip, args)
            drops = ", ".join(f"{k}: {v}" for k, v in sorted(m.drops.items()) if v) or "0"
            table.add_row(row.label, f"{row.cameras} ({row.quiet})", _mean(m.busy_runs_per_s),
                          _mean(m.busy_runs_per_motion_s),
                          _mean(m.quiet_runs_per_s), f"{m.gated_per_s:.1f}", f"{m.p95_ms:.0f}", drops,
                          f"{m.cpu_percent:.0f}", f"{m.cpu_percent / m.cameras:.1f}",
                          f"{m.decoded_per_s:.1f} / {m.processed_per_s:.1f}",
                          f"{m.rss_mb:.0f}",
                          f"{m.viewer_fps:.1f}" if m.viewer_fps is not None else "-")
            print(f"{row.label}, {row.cameras} cameras ({row.quiet} quiet): {m.cpu_percent:.0f}% CPU", flush=True)
    Console(width=220).print(table)
    notes = ("before: motion gating off and each stream running the detector from its own thread (the defaults "
             "until both came); default: today's. Busy cameras replay the shared person and car videos, quiet ones "
             "a still room with noise. Runs per second of motion: a camera's detector runs over the seconds in which "
             "its motion gating saw something move (or a track moving); gating off: none. The queue one run at a "
             "time: batching.cpu_workers=1 (one keyframe at a time on both cores' threads, the default before "
             "one run per core). --record copies each camera's packets (no re-encoding); --record-annotated "
             "re-encodes the annotated video, as --record did before. Every frame processed (before): "
             "source.skip_unneeded_frames=false, each decoded frame converted, looked at for motion and tracked; "
             "today a stream nobody watches processes detector.fps frames a second.")
    name = "density-recording" if args.recording_only else "density-nvr" if args.nvr_only else "density"
    save_table(name, table, notes=notes)


if __name__ == "__main__":
    main()
