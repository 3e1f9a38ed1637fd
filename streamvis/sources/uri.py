"""Parse a source URI into what kind of source it is and how FFmpeg should open it (pure, no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

SourceKind = Literal["file", "images", "device", "stream", "synthetic"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp",
     ".ogv", ".y4m", ".gif"}
)
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What `open_source` needs: kind, FFmpeg target and format, demuxer options, liveness."""

    uri: str
    kind: SourceKind
    target: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    live: bool = False

    @property
    def source_id(self) -> str:
        if self.kind in {"file", "images"}:
            return Path(self.target.split("*")[0]).name or self.target
        return self.uri


def _query(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


def parse_source_uri(uri: str) -> SourceSpec:
    """Classify `uri`: synthetic:, a URL, a V4L2 device or camera index, a glob, a folder, or a file."""
    uri = uri.strip()
    if uri.startswith("synthetic:"):
        return SourceSpec(uri, "synthetic", uri, options=_query(uri.partition("?")[2]))
    if uri.isdigit():
        return SourceSpec(uri, "device", f"/dev/video{uri}", format="v4l2", live=True)
    if uri.startswith("/dev/video"):
        device, _, query = uri.partition("?")
        return SourceSpec(uri, "device", device, format="v4l2", options=_query(query), live=True)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return parse_source_uri(parts.path)
    if scheme in STREAM_SCHEMES:
        options: dict[str, str] = {}
        suffix = Path(parts.path).suffix.lower()
        # An HTTP(S) URL to a plain video file is finite (no reconnect); HLS and other streams are live.
        live = not (scheme in {"http", "https"} and suffix in VIDEO_SUFFIXES)
        return SourceSpec(uri, "stream", uri, options=options, live=live)
    if _GLOB_CHARS.search(uri):
        return SourceSpec(uri, "images", uri)
    path = Path(uri).expanduser()
    if path.is_dir():
        return SourceSpec(uri, "images", str(path))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return SourceSpec(uri, "images", str(path))
    return SourceSpec(uri, "file", str(path))
