"""Sources: one entry point, `open_source(uri)`, for files, images, cameras, network streams and test patterns."""

from __future__ import annotations

from streamvis.config import SourceConfig
from streamvis.errors import SourceError
from streamvis.sources.base import Source, SourceReport
from streamvis.sources.spans import FrameSpan, MediaIndex, index_media
from streamvis.sources.uri import SourceSpec, parse_source_uri

__all__ = ["FrameSpan", "MediaIndex", "Source", "SourceReport", "SourceSpec", "index_media", "open_source",
           "parse_source_uri"]


def open_source(uri: str, config: SourceConfig | None = None, source_id: str | None = None,
                span: FrameSpan | None = None) -> Source:
    """Open `uri` (see `parse_source_uri` for what it may be); raises `SourceError` naming the problem. `span`:
    only those frames of a video file (a chunk of it), numbered and timed as in a whole read."""
    config = config or SourceConfig()
    spec = parse_source_uri(uri)
    if span is not None and spec.kind != "file":
        raise SourceError(f"{uri}: a frame span needs a video file")
    if spec.kind == "synthetic":
        from streamvis.sources.synthetic import SyntheticSource

        return SyntheticSource(uri, spec.options, source_id)
    if spec.kind == "images":
        from streamvis.sources.images import ImageSource

        return ImageSource(uri, spec.target, config.image_fps, source_id or spec.source_id)
    from streamvis.sources.av_source import AVSource

    return AVSource(spec, config, source_id, span)
