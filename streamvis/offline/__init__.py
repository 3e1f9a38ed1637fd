"""Recorded videos, offline: `runner` (one source through a pipeline, threaded, nothing dropped, deterministic),
`process` (`streamvis process` over many inputs, their outputs and a summary) and `on_ray` (the same on a Ray
cluster, chunked at keyframes). Nothing here is imported by `streamvis.live` or `streamvis.server`."""
