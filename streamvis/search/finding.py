"""`streamvis search`: the index opened read-only, the sentence embedded with the model the index was made with,
the moments ranked, each cut into a clip on request (`clips.cut`), and shown as a table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from streamvis.config import ClipEmbedderConfig
from streamvis.errors import ConfigError, OutputError
from streamvis.search.embedder import ImageTextEmbedder
from streamvis.search.index import Found, MomentIndex, local_time, parse_time

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Search:
    """What `streamvis search` found: the moments, best first, rank -> the clip cut for it, and the index's clock
    (`video`: seconds into each video; `wall`: Unix time)."""

    found: list[Found]
    clips: dict[int, str]
    clock: str

    def to_json(self) -> list[dict[str, Any]]:
        return [{**f.to_json(self.clock), **({"clip": self.clips[rank]} if rank in self.clips else {})}
                for rank, f in enumerate(self.found, 1)]


def find(query: str, index: Path, top: int = 10, stream: str | None = None, class_name: str | None = None,
         since: str | None = None, until: str | None = None, export: Path | None = None) -> Search:
    """The moments that match `query`; `since` / `until` in seconds or (for a live index) a date and time. With
    `export`, each moment is cut into a clip, a second either side, from the video its run wrote or its stream's
    recording."""
    if not query.strip():
        raise ConfigError("search: the query is empty")
    since_s = parse_time(since, "--since") if since is not None else None
    until_s = parse_time(until, "--until") if until is not None else None
    moments = MomentIndex(index, read_only=True)
    clips: dict[int, str] = {}
    try:
        embedder = ImageTextEmbedder(ClipEmbedderConfig(model=moments.model))
        found = moments.search(embedder.texts([query])[0], top, stream, class_name, since_s, until_s)
        if export is not None:
            for rank, f in enumerate(found, 1):
                name = f"{rank:02d}_{f.stream}_{f.kind}{'' if f.track is None else f.track}_{f.start_s:.1f}s.mp4"
                try:
                    clips[rank] = str(cut_moment(moments, f, export / name))
                except OutputError as exc:
                    log.warning("moment %d: %s", rank, exc)
    finally:
        moments.close()
    return Search(found, clips, moments.clock)


def cut_moment(moments: MomentIndex, found: Found, out: Path, margin_s: float = 1.0) -> Path:
    """`found`, `margin_s` either side, cut into `out` from where its stream's moments are kept: the video its run
    wrote, or its live recording's segments (`OutputError` names what is missing)."""
    from streamvis.search.clips import cut, cut_recording

    video = moments.video_of(found.stream)
    start_s, end_s = found.start_s - margin_s, found.end_s + margin_s
    if video is not None and video.kind == "recording" and video.path.is_dir():
        return cut_recording(video.path, start_s, end_s, out)
    if video is not None and video.path.is_file():
        return cut(video.path, max(0.0, start_s), end_s, out)
    raise OutputError(f"{found.stream}: no video or recording to cut the moment from")


def moments_table(query: str, index: Path, result: Search) -> Table:
    table = Table(title=f"streamvis search: \"{query}\" in {index} ({len(result.found)} moments)")
    wall = result.clock == "wall"
    for column in ("#", "similarity", "kind", "stream", "from" if wall else "from s", "to" if wall else "to s",
                   "track", "class", "thumbnail"):
        table.add_column(column, justify="left" if column in ("kind", "stream", "class", "thumbnail") else "right")
    for rank, f in enumerate(result.found, 1):
        start, end = (local_time(f.start_s), local_time(f.end_s)[11:19]) if wall else (f"{f.start_s:.1f}",
                                                                                      f"{f.end_s:.1f}")
        table.add_row(str(rank), f"{f.similarity:.3f}", f.kind, f.stream, start[:19].replace("T", " "), end,
                      "" if f.track is None else str(f.track), f.class_name or "", f.thumbnail)
    return table
