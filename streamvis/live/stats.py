"""Live statistics: rates, latency percentiles and histograms, counters; rendered as Prometheus text."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            while self._times and self._times[0] < now - self.window_s:
                self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and self._times[0] < now - self.window_s:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(now - self._times[0], 1e-6)


class Latency:
    """Recent samples for p50/p95, plus cumulative histogram counts for Prometheus."""

    def __init__(self, keep: int = 600) -> None:
        self._recent: deque[float] = deque(maxlen=keep)
        self.buckets = [0] * len(LATENCY_BUCKETS_MS)
        self.count = 0
        self.sum_ms = 0.0
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._recent.append(ms)
            self.count += 1
            self.sum_ms += ms
            for i, bound in enumerate(LATENCY_BUCKETS_MS):
                if ms <= bound:
                    self.buckets[i] += 1

    def recent(self, n: int) -> list[float]:
        """The last `n` samples (fewer when fewer are kept)."""
        with self._lock:
            return list(self._recent)[-n:] if n > 0 else []

    def percentiles(self) -> tuple[float, float]:
        with self._lock:
            if not self._recent:
                return 0.0, 0.0
            values = np.fromiter(self._recent, float)
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))


@dataclass
class StreamStats:
    """Everything measured about one live stream."""

    stream: str
    fps_in: RateMeter = field(default_factory=RateMeter)
    fps_out: RateMeter = field(default_factory=RateMeter)
    keyframe_rate: RateMeter = field(default_factory=RateMeter)
    frames_in: int = 0
    frames_out: int = 0
    # frames dropped, per place: `ingest` (the pipeline had not taken a frame when a newer one came), `whip` (a
    # published frame not yet decoded), `encoder` (the shared encoder was busy), `viewer` (one viewer's track fell
    # behind), `record` (the recorder could not keep up)
    drops: dict[str, int] = field(default_factory=dict)
    stale_results: int = 0  # keyframe results older than the staleness budget, discarded
    keyframes: int = 0
    gated_keyframes: int = 0  # due keyframes motion gating skipped: nothing moved
    moving_frames: int = 0  # frames in which motion gating saw something move (or a track moving)
    references_only: bool = False  # decoding only the frames others refer to (`live.decoding`)
    skipped_frames: int = 0  # frames the decoder left out meanwhile
    past_rate_frames: int = 0  # frames decoded but not processed: past detector.fps while nothing needed them
    cropped_keyframes: int = 0  # detector runs that saw only the moving part of the frame (`motion.crop`)
    latency_budget: dict[str, object] | None = None  # the latency budget's state (`LatencyBudget.snapshot`)
    motion_gating: bool = False
    viewers: int = 0
    stages: dict[str, Latency] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)  # model role -> runtime really in use
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_drop(self, where: str, frames: int = 1) -> None:
        """Thread-safe: called by the slots and queues that drop frames (`NewestSlot.on_drop`)."""
        with self._lock:
            self.drops[where] = self.drops.get(where, 0) + frames

    @property
    def dropped(self) -> int:
        """Frames dropped at ingest: the newest frame won before the pipeline took the older one."""
        return self.drops.get("ingest", 0)

    def stage(self, name: str, ms: float) -> None:
        latency = self.stages.get(name)
        if latency is None:
            latency = self.stages.setdefault(name, Latency())
        latency.add(ms)

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready summary (the data channel's stats messages, /streams)."""
        out: dict[str, object] = {
            "fps_in": round(self.fps_in.rate(), 2), "fps_out": round(self.fps_out.rate(), 2),
            "keyframes_per_s": round(self.keyframe_rate.rate(), 2), "frames_in": self.frames_in,
            "frames_out": self.frames_out, "dropped": self.dropped, "drops": dict(self.drops),
            "stale_results": self.stale_results, "keyframes": self.keyframes,
            "gated_keyframes": self.gated_keyframes, "cropped_keyframes": self.cropped_keyframes,
            "moving_frames": self.moving_frames, "references_only": self.references_only,
            "skipped_frames": self.skipped_frames, "past_rate_frames": self.past_rate_frames,
            "motion_gating": self.motion_gating,
            "viewers": self.viewers, "providers": dict(self.providers),
        }
        if self.latency_budget is not None:
            out["latency_budget"] = self.latency_budget
        out["latency_ms"] = {name: dict(zip(("p50", "p95"), (round(v, 2) for v in lat.percentiles()),
                                            strict=True))
                             for name, lat in sorted(self.stages.items())}
        return out


def prometheus_text(all_stats: list[StreamStats]) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP streamvis_{name} {help_text}")
        lines.append(f"# TYPE streamvis_{name} {kind}")

    gauges = (("fps_in", "frames per second decoded", lambda s: s.fps_in.rate()),
              ("fps_out", "frames per second annotated and published", lambda s: s.fps_out.rate()),
              ("keyframes_per_second", "detector runs per second", lambda s: s.keyframe_rate.rate()),
              ("viewers", "connected viewers", lambda s: s.viewers))
    for name, help_text, value in gauges:
        family(name, "gauge", help_text)
        lines += [f'streamvis_{name}{{stream="{s.stream}"}} {value(s):.3f}' for s in all_stats]
    budgeted = [s for s in all_stats if s.latency_budget is not None]
    if budgeted:
        family("latency_budget_level", "gauge", "steps down the latency budget's ladder (0: full quality)")
        lines += [f'streamvis_latency_budget_level{{stream="{s.stream}"}} {(s.latency_budget or {})["level"]}'
                  for s in budgeted]
    counters = (("frames_in_total", "frames processed (decoded and passed on)", "frames_in"),
                ("frames_out_total", "frames published", "frames_out"),
                ("dropped_frames_total", "frames dropped at ingest (newest frame wins)", "dropped"),
                ("stale_results_total", "keyframe results discarded as too old", "stale_results"),
                ("keyframes_total", "keyframes (detector runs applied)", "keyframes"),
                ("gated_keyframes_total", "due keyframes motion gating skipped (nothing moved)", "gated_keyframes"),
                ("cropped_keyframes_total", "detector runs that saw only the moving part of the frame",
                 "cropped_keyframes"),
                ("moving_frames_total", "frames in which motion gating saw something move", "moving_frames"),
                ("skipped_frames_total", "frames left undecoded: nothing needed them", "skipped_frames"),
                ("past_rate_frames_total", "frames decoded but not processed: past detector.fps, nothing needed them",
                 "past_rate_frames"))
    for name, help_text, attr in counters:
        family(name, "counter", help_text)
        lines += [f'streamvis_{name}{{stream="{s.stream}"}} {getattr(s, attr)}' for s in all_stats]
    family("slot_dropped_frames_total", "counter", "frames dropped per place: ingest, whip, encoder, viewer, record")
    for s in all_stats:
        drops = {"ingest": 0, **s.drops}
        lines += [f'streamvis_slot_dropped_frames_total{{stream="{s.stream}",slot="{where}"}} {count}'
                  for where, count in sorted(drops.items())]
    family("model_info", "gauge", "the runtime and execution provider really in use per model (value 1)")
    for s in all_stats:
        lines += [f'streamvis_model_info{{stream="{s.stream}",model="{role}",provider="{provider}"}} 1'
                  for role, provider in sorted(s.providers.items())]
    family("stage_latency_ms", "histogram", "per-stage latency in milliseconds")
    for s in all_stats:
        for stage, lat in sorted(s.stages.items()):
            labels = f'stream="{s.stream}",stage="{stage}"'
            for bound, count in zip(LATENCY_BUCKETS_MS, lat.buckets, strict=True):
                lines.append(f'streamvis_stage_latency_ms_bucket{{{labels},le="{bound}"}} {count}')
            lines.append(f'streamvis_stage_latency_ms_bucket{{{labels},le="+Inf"}} {lat.count}')
            lines.append(f"streamvis_stage_latency_ms_sum{{{labels}}} {lat.sum_ms:.3f}")
            lines.append(f"streamvis_stage_latency_ms_count{{{labels}}} {lat.count}")
    return "\n".join(lines) + "\n"
