"""`serve --index FILE`: every stream indexed as it runs, searched over HTTP (`GET /search`).

Each stream's results go to its own `MomentCollector` behind a `ThreadedSink` (a bounded queue; a full queue
drops the result and counts it as `index` in the stream's drops), so embedding never runs in a stream's loop. The
streams share one embedding model and one index file; the index serialises its writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamvis.config import ClipEmbedderConfig
from streamvis.search.collect import MomentCollector
from streamvis.search.embedder import ImageTextEmbedder
from streamvis.search.index import Found, MomentIndex
from streamvis.sinks.record import ThreadedSink


class LiveIndex:
    def __init__(self, path: Path, embedder: ImageTextEmbedder, config: ClipEmbedderConfig) -> None:
        self.index = MomentIndex(path, embedder.name, embedder.dim)
        self.embedder = embedder
        self.config = config

    def sink(self, stream: str, on_drop: Callable[[str, int], None] | None = None) -> ThreadedSink:
        """The sink that indexes `stream` (its tracks when they end, a scene keyframe every few seconds)."""
        return ThreadedSink(MomentCollector(self.index, self.embedder, stream, self.config), "index", stream,
                            on_drop=on_drop)

    def search(self, query: str, top: int = 10, stream: str | None = None, class_name: str | None = None,
               since_s: float | None = None, until_s: float | None = None) -> list[Found]:
        """The moments indexed so far that match `query` (blocking: call it from a worker thread)."""
        return self.index.search(self.embedder.texts([query])[0], top, stream, class_name, since_s, until_s)

    def close(self) -> None:
        self.index.close()
