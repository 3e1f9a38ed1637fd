"""An index written in parts: several writers at once (a Ray run's write tasks, one per input) each write a part
file of their own beside the index (`INDEX.parts/<output>.duckdb`: DuckDB takes one writer per file), with their
thumbnails beside the index itself; once they are done, one process merges each part into the index in one
transaction (`MomentIndex.merge`) and deletes it. A part that cannot be merged is kept and named."""

from __future__ import annotations

from pathlib import Path

from streamvis.config import ClipEmbedderConfig, PipelineConfig
from streamvis.errors import StreamvisError
from streamvis.frame import Result
from streamvis.search.collect import MomentCollector
from streamvis.search.index import MomentIndex
from streamvis.sinks import Sink


def index_part(index: Path, output: Path) -> Path:
    """Where the Ray task writing `output` puts its moments: a file of its own beside `index` (one writer per
    file), merged into `index` by the driver once the task is done."""
    return index.with_name(index.name + ".parts") / f"{output.stem}.duckdb"


def index_sink(uri: str, output: Path, config: PipelineConfig, index: Path) -> Sink | None:
    """The index sink of the task writing `output`: its own part of `index`, its thumbnails beside `index`."""
    if not isinstance(config.embedder, ClipEmbedderConfig):
        return None
    from streamvis.search.embedder import ImageTextEmbedder

    embedder = ImageTextEmbedder(config.embedder)
    part = index_part(index, output)
    part.unlink(missing_ok=True)  # a part left by a run that failed before merging it
    return _ClosingIndex(MomentCollector(MomentIndex(part, embedder.name, embedder.dim), embedder, output.stem,
                                         config.embedder, output, uri, thumbs_of=index))


class _ClosingIndex:
    """A collector whose index file is closed with it (a Ray task owns its part from start to end)."""

    def __init__(self, collector: MomentCollector) -> None:
        self.collector = collector

    def write(self, result: Result) -> None:
        self.collector.write(result)

    def close(self) -> None:
        try:
            self.collector.close()
        finally:
            self.collector.index.close()


def merge_parts(index: Path, outputs: list[Path]) -> tuple[int, int, list[str]]:
    """The parts the write tasks made, merged into `index` (created like its first part) one transaction each;
    a part merged is deleted, one that fails stays, named in the returned problems."""
    tracks = scenes = 0
    problems: list[str] = []
    moments: MomentIndex | None = None
    try:
        for output in outputs:
            part = index_part(index, output)
            if not part.is_file():
                continue
            try:
                if moments is None:
                    first = MomentIndex(part, read_only=True)
                    model, dim, clock = first.model, first.dim, first.clock
                    first.close()
                    moments = MomentIndex(index, model, dim, clock=clock)
                added = moments.merge(part)
            except StreamvisError as exc:
                problems.append(str(exc))
                continue
            tracks, scenes = tracks + added[0], scenes + added[1]
            part.unlink()
            part.with_name(part.name + ".wal").unlink(missing_ok=True)
    finally:
        if moments is not None:
            moments.close()
    folder = index.with_name(index.name + ".parts")
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return tracks, scenes, problems
