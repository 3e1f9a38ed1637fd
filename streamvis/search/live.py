"""`serve --index FILE`: every stream indexed as it runs, timed by the wall clock, searched over HTTP (`GET /search`);
with `--record DIR`, each stream's moments are cut from its recording (`search.clips.cut_recording`).

Each stream's results go to its own `MomentCollector` behind a `ThreadedSink` (a bounded queue; a full queue
drops the result and counts it as `index` in the stream's drops), so embedding never runs in a stream's loop. The
streams share one embedding model and one index file; the index serialises its writes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamvis.config import ClipEmbedderConfig
from streamvis.errors import ConfigError, OutputError
from streamvis.search.alerts import Alert, AlertRules
from streamvis.search.collect import MomentCollector
from streamvis.search.embedder import ImageTextEmbedder
from streamvis.search.index import Found, MomentIndex
from streamvis.sinks.record import ThreadedSink


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """`serve --alert`: the sentences, how alike a view must be (cosine similarity; CLIP-size models put a
    matching sentence and photo around 0.25-0.35), and where alerts are also POSTed."""

    texts: list[str]
    threshold: float = 0.25
    cooldown_s: float = 60.0
    max_per_minute: int = 6
    webhook: str | None = None

    @classmethod
    def from_options(cls, texts: list[str], threshold: float, cooldown_s: float,
                     webhook: str | None) -> AlertSettings | None:
        """`serve --alert ...`'s options, checked (`ConfigError` names the one that is wrong); None without a
        sentence."""
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise ConfigError(f"--alert-webhook: expected an http:// or https:// URL, got '{webhook}'")
        sentences = [t.strip() for t in texts if t.strip()]
        if webhook is not None and not sentences:
            raise ConfigError("--alert-webhook needs at least one --alert sentence")
        if cooldown_s < 0:
            raise ConfigError(f"--alert-cooldown-s must be 0 or more, got {cooldown_s:g}")
        return cls(sentences, threshold, cooldown_s, webhook=webhook) if sentences else None


class LiveIndex:
    def __init__(self, path: Path, embedder: ImageTextEmbedder, config: ClipEmbedderConfig,
                 alerts: AlertSettings | None = None) -> None:
        self.index = MomentIndex(path, embedder.name, embedder.dim, clock="wall")
        self.embedder = embedder
        self.config = config
        self.alert_settings = alerts
        self.rules = AlertRules(alerts.texts, embedder.texts(alerts.texts), alerts.threshold, alerts.cooldown_s,
                                alerts.max_per_minute) if alerts is not None and alerts.texts else None
        self._recorded: set[str] = set()

    def recorded(self) -> list[str]:
        """The streams whose moments can be played back (`serve --record`): `GET /search/clip` cuts them."""
        return sorted(self._recorded)

    def sink(self, stream: str, on_drop: Callable[[str, int], None] | None = None,
             on_alert: Callable[[Alert], None] | None = None, recording: Path | None = None,
             source: str = "") -> tuple[MomentCollector, ThreadedSink]:
        """The collector that indexes `stream` (its tracks, a scene keyframe every few seconds, timed by the wall
        clock) and checks its new tracks against the alert sentences, and the sink that runs it in a thread of its
        own. `recording`: the folder its recording's segments go to, where its moments are cut from."""
        collector = MomentCollector(self.index, self.embedder, stream, self.config, recording, source,
                                    alerts=self.rules, on_alert=on_alert)
        if recording is not None:
            self._recorded.add(stream)
        return collector, ThreadedSink(collector, "index", stream, on_drop=on_drop)

    def search(self, query: str, top: int = 10, stream: str | None = None, class_name: str | None = None,
               since_s: float | None = None, until_s: float | None = None) -> list[Found]:
        """The moments indexed so far that match `query` (blocking: call it from a worker thread)."""
        return self.index.search(self.embedder.texts([query])[0], top, stream, class_name, since_s, until_s)

    def thumbnail(self, relative: str) -> Path | None:
        """The thumbnail file a moment names (relative to the index's folder), None if it is not one of this
        index's thumbnails."""
        thumbs = self.index.path.with_name(self.index.path.name + ".thumbs").resolve()
        path = (self.index.path.parent / relative).resolve()
        return path if path.is_relative_to(thumbs) and path.suffix == ".jpg" and path.is_file() else None

    def clip(self, stream: str, start_s: float, end_s: float) -> bytes:
        """The MP4 of `stream` from `start_s` to `end_s` (Unix times), cut from its recording (blocking: call it from
        a worker thread). `OutputError` says why there is none."""
        from streamvis.search.clips import cut_recording

        video = self.index.video_of(stream)
        if video is None or video.kind != "recording":
            raise OutputError(f"{stream}: not recorded (serve --record DIR keeps what moments are cut from)")
        with tempfile.TemporaryDirectory(prefix="streamvis-clip-") as folder:
            return cut_recording(video.path, start_s, end_s, Path(folder) / "clip.mp4").read_bytes()

    def close(self) -> None:
        self.index.close()
