"""`streamvis search`: the index opened read-only, the sentence embedded with the model the index was made with,
the moments ranked, each cut into a clip on request (`clips.cut`), and shown as a table."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.table import Table

from streamvis.config import ClipEmbedderConfig
from streamvis.errors import ConfigError
from streamvis.search.embedder import ImageTextEmbedder
from streamvis.search.index import Found, MomentIndex

log = logging.getLogger(__name__)


def find(query: str, index: Path, top: int = 10, stream: str | None = None, class_name: str | None = None,
         since_s: float | None = None, until_s: float | None = None,
         export: Path | None = None) -> tuple[list[Found], dict[int, str]]:
    """The moments, best first, and (with `export`) rank -> the clip cut for it: the moment a second either side,
    from the video its run wrote."""
    if not query.strip():
        raise ConfigError("search: the query is empty")
    moments = MomentIndex(index, read_only=True)
    clips: dict[int, str] = {}
    try:
        embedder = ImageTextEmbedder(ClipEmbedderConfig(model=moments.model))
        found = moments.search(embedder.texts([query])[0], top, stream, class_name, since_s, until_s)
        if export is not None:
            from streamvis.search.clips import cut

            for rank, f in enumerate(found, 1):
                video = moments.video_of(f.stream)
                if video is None or not video.is_file():
                    log.warning("%s: no video to cut moment %d from", f.stream, rank)
                    continue
                name = f"{rank:02d}_{f.stream}_{f.kind}{'' if f.track is None else f.track}_{f.start_s:.1f}s.mp4"
                clips[rank] = str(cut(video, max(0.0, f.start_s - 1), f.end_s + 1, export / name))
    finally:
        moments.close()
    return found, clips


def moments_table(query: str, index: Path, found: list[Found]) -> Table:
    table = Table(title=f"streamvis search: \"{query}\" in {index} ({len(found)} moments)")
    for column in ("#", "similarity", "kind", "stream", "from s", "to s", "track", "class", "thumbnail"):
        table.add_column(column, justify="right" if column in ("#", "similarity", "from s", "to s", "track")
                         else "left")
    for rank, f in enumerate(found, 1):
        table.add_row(str(rank), f"{f.similarity:.3f}", f.kind, f.stream, f"{f.start_s:.1f}", f"{f.end_s:.1f}",
                      "" if f.track is None else str(f.track), f.class_name or "", f.thumbnail)
    return table
