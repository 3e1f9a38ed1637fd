"""Sources: one entry point, `open_source(uri)`, for files, images, cameras, network streams and test patterns."""

from __future__ import annotations

from streamvis.config import SourceConfig
from streamvis.sources.base import Source, SourceReport
from streamvis.sources.uri import SourceSpec, parse_source_uri

__all__ = ["Source", "SourceReport", "SourceSpec", "open_source", "parse_source_uri"]


def open_source(uri: str, config: SourceConfig | None = None, source_id: str | None = None) -> Source:
    """Open `uri` (see `parse_source_uri` for what it may be); raises `SourceError` naming the problem."""
    config = config or SourceConfig()
    spec = parse_source_uri(uri)
    if spec.kind == "synthetic":
        from streamvis.sources.synthetic import SyntheticSource

        return SyntheticSource(uri, spec.options, source_id)
    if spec.kind == "images":
        from streamvis.sources.images import ImageSource

        return ImageSource(uri, spec.target, config.image_fps, source_id or spec.source_id)
    from streamvis.sources.av_source import AVSource

    return AVSource(spec, config, source_id)
