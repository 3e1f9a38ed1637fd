"""`serve --index FILE`: every stream indexed as it runs, searched over HTTP (`GET /search`).

Each stream's results go to its own `MomentCollector` behind a `ThreadedSink` (a bounded queue; a full queue
drops the result and counts it as `index` in the stream's drops), so embedding never runs in a stream's loop. The
streams share one embedding model and one index file; the index serialises its writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamvis.config import ClipEmbedderConfig
from streamvis.errors import ConfigError
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
        self.index = MomentIndex(path, embedder.name, embedder.dim)
        self.embedder = embedder
        self.config = config
        self.alert_settings = alerts
        self.rules = AlertRules(alerts.texts, embedder.texts(alerts.texts), alerts.threshold, alerts.cooldown_s,
                                alerts.max_per_minute) if alerts is not None and alerts.texts else None

    def sink(self, stream: str, on_drop: Callable[[str, int], None] | None = None,
             on_alert: Callable[[Alert], None] | None = None) -> ThreadedSink:
        """The sink that indexes `stream` (its tracks when they end, a scene keyframe every few seconds) and checks
        its new tracks against the alert sentences."""
        collector = MomentCollector(self.index, self.embedder, stream, self.config, alerts=self.rules,
                                    on_alert=on_alert)
        return ThreadedSink(collector, "index", stream, on_drop=on_drop)

    def search(self, query: str, top: int = 10, stream: str | None = None, class_name: str | None = None,
               since_s: float | None = None, until_s: float | None = None) -> list[Found]:
        """The moments indexed so far that match `query` (blocking: call it from a worker thread)."""
        return self.index.search(self.embedder.texts([query])[0], top, stream, class_name, since_s, until_s)

    def close(self) -> None:
        self.index.close()
