"""Finding moments by words, what it costs: query latency and size of the index at 10^4, 10^5 and 10^6 tracks,
and the embedding model's cost at its real size (CLIP ViT-B/32's architecture with random weights: no real
weights can be had here), turned into the cost of indexing an hour of video.

    .venv/bin/python benchmarks/search.py [--rows 10000 100000 1000000] [--dim 512]

Rows are random unit vectors (a stand-in may time an index; it says nothing of what a model retrieves), written
the way `process --index` writes them (tracks with their fields, in DuckDB's fixed-size arrays) but in bulk; each
query ranks every row (`array_cosine_similarity`, a scan) with no filter, with a class filter, and with a time
window. The model's cost: crops and sentences embedded per second on this CPU, in batches of 16; an hour of video
is costed from what `process --index` embeds on the shared person video (three views per track, a scene keyframe
every 5 s). The size of an hour: `process --index` on the shared person video with the real YOLOX-nano and
ByteTrack and a 512-value stand-in embedder, the index file and its thumbnails scaled to an hour.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from results import save_table
from rich.console import Console
from rich.table import Table

CLASSES = ["person", "car", "dog", "bicycle", "bus", "truck", "cat", "bottle"]
ROOT = Path(__file__).resolve().parent.parent
PERSON = ROOT.parent / "shared" / "media" / "videos" / "intel_one-by-one-person-detection.mp4"


def fill(path: Path, rows: int, dim: int, rng: np.random.Generator) -> float:
    """`rows` random tracks into a new index at `path`, in bulk through Arrow; returns the seconds it took."""
    import pyarrow as pa

    from streamvis.search.index import MomentIndex

    index = MomentIndex(path, "random", dim)
    index.close()
    import duckdb

    db = duckdb.connect(str(path))
    start = time.perf_counter()
    for first in range(0, rows, 50_000):
        n = min(50_000, rows - first)
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        starts = rng.uniform(0, 3600 * 24, n)
        table = pa.table({
            "stream": pa.array([f"cam{i % 16}" for i in range(n)]), "track": pa.array(np.arange(first, first + n)),
            "class": pa.array([CLASSES[i % len(CLASSES)] for i in range(n)]), "start_s": starts,
            "end_s": starts + rng.uniform(1, 60, n), "score": rng.uniform(0.3, 1, n),
            "x1": np.zeros(n), "y1": np.zeros(n), "x2": np.ones(n), "y2": np.ones(n),
            "thumbnail": pa.array(["t.jpg"] * n),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)})
        db.register("batch", table)
        db.execute("INSERT INTO tracks SELECT * FROM batch")
        db.unregister("batch")
    db.execute("CHECKPOINT")
    db.close()
    return time.perf_counter() - start


def query_ms(path: Path, dim: int, rng: np.random.Generator, repeats: int = 5) -> dict[str, float]:
    from streamvis.search.index import MomentIndex

    index = MomentIndex(path, read_only=True)
    out = {}
    for name, kwargs in (("all", {}), ("class", {"class_name": "dog"}),
                         ("an hour", {"since_s": 7200.0, "until_s": 10800.0})):
        times = []
        for _ in range(repeats):
            query = rng.standard_normal(dim).astype(np.float32)
            query /= np.linalg.norm(query)
            start = time.perf_counter()
            index.search(query, top=10, **kwargs)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times) * 1e3
    index.close()
    return out


class RandomEmbedder:
    """A stand-in of the real model's width (512): random unit vectors. It times and sizes the index; it says
    nothing of what a model retrieves."""

    name, dim, provider = "random-512", 512, "cpu"

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def _unit(self, n: int) -> np.ndarray:
        vectors = self.rng.standard_normal((n, self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def images(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        return self._unit(len(images_bgr))

    def texts(self, texts: list[str]) -> np.ndarray:
        return self._unit(len(texts))


def size_per_hour(video: Path, models_dir: Path, folder: Path) -> dict[str, float]:
    """`process --index` on `video` with the real YOLOX and tracker, a 512-value stand-in embedder: what the index
    file and its thumbnails hold per hour of such video."""
    import dataclasses

    from streamvis.config import PipelineConfig
    from streamvis.offline.process import process_input
    from streamvis.pipeline.loading import load_models
    from streamvis.search.index import MomentIndex

    config = PipelineConfig.model_validate({"embedder": {"type": "clip"}})
    models = dataclasses.replace(load_models(PipelineConfig(), models_dir), embedder=RandomEmbedder())
    index = MomentIndex(folder / "moments.duckdb", "random-512", 512)
    report = process_input(str(video), folder / "out.mp4", None, config, models, show_progress=False, index=index)
    tracks, scenes = index.counts()
    index.close()
    seconds = report.frames / 10.0  # the person video: 10 fps
    thumbs = sum(f.stat().st_size for f in (folder / "moments.duckdb.thumbs").rglob("*.jpg"))
    per_hour = 3600 / seconds
    return {"tracks": tracks * per_hour, "scenes": scenes * per_hour, "thumbs_mb": thumbs * per_hour / 1e6}


def model_cost() -> dict[str, float]:
    """CLIP ViT-B/32 with random weights: crops and sentences per second, batches of 16."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from streamvis.config import ClipEmbedderConfig
    from streamvis.search.embedder import ImageTextEmbedder
    from streamvis.testing.models import build_sam3_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        CLIPModel(CLIPConfig()).eval().save_pretrained(tmp)  # ViT-B/32's architecture, random weights
        build_sam3_tokenizer().save_pretrained(tmp)
        embedder = ImageTextEmbedder(ClipEmbedderConfig(model=tmp))
        crops = [np.random.default_rng(i).integers(0, 255, (160, 90, 3), dtype=np.uint8) for i in range(64)]
        embedder.images(crops[:16])
        start = time.perf_counter()
        embedder.images(crops)
        images_per_s = len(crops) / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(10):
            embedder.texts(["a red car stopping at the gate"])
        text_ms = (time.perf_counter() - start) / 10 * 1e3
    return {"images_per_s": images_per_s, "text_ms": text_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--models-dir", default=ROOT.parent / "shared" / "models")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = Table(title=f"The index (DuckDB, {args.dim}-value embeddings): size and query latency (top 10, median "
                        "of 5)")
    for column in ("tracks", "build s", "file MB", "bytes / track", "query ms", "class filter ms",
                   "an hour of a day ms"):
        table.add_column(column, justify="right")
    bytes_per_row = 0.0
    with tempfile.TemporaryDirectory(prefix="streamvis-search-") as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"{rows}.duckdb"
            build_s = fill(path, rows, args.dim, rng)
            size = path.stat().st_size
            latency = query_ms(path, args.dim, rng)
            bytes_per_row = size / rows  # (the largest index's figure sizes an hour below: a small file is mostly
            # DuckDB's fixed blocks)
            table.add_row(f"{rows:,}", f"{build_s:.1f}", f"{size / 1e6:.0f}", f"{size / rows:.0f}",
                          f"{latency['all']:.1f}", f"{latency['class']:.1f}", f"{latency['an hour']:.1f}")
            path.unlink()
    console = Console(width=200)
    console.print(table)
    save_table("search_index", table)
    cost = model_cost()
    # what process --index embedded on the shared person video (139.4 s): 7 tracks x 3 views + 28 scene keyframes
    per_hour = (7 * 3 + 28) * 3600 / 139.4
    model = Table(title="The embedding model at its real size (CLIP ViT-B/32 architecture, random weights), this CPU")
    for column in ("crops / s (batch 16)", "sentence ms", "crops an hour of the person video",
                   "model s per hour of video"):
        model.add_column(column, justify="right")
    model.add_row(f"{cost['images_per_s']:.1f}", f"{cost['text_ms']:.1f}", f"{per_hour:.0f}",
                  f"{per_hour / cost['images_per_s']:.0f}")
    console.print(model)
    save_table("search_model", model)
    with tempfile.TemporaryDirectory(prefix="streamvis-search-size-") as tmp:
        size = size_per_hour(PERSON, Path(args.models_dir), Path(tmp))
    sizes = Table(title="An hour of the shared person video indexed (process --index, the real YOLOX-nano and "
                        "ByteTrack, 512-value vectors from a stand-in)")
    for column in ("tracks / hour", "scene keyframes / hour", "index file MB / hour (rows x bytes per row above)",
                   "thumbnails MB / hour"):
        sizes.add_column(column, justify="right")
    db_mb = (size["tracks"] + size["scenes"]) * bytes_per_row / 1e6
    sizes.add_row(f"{size['tracks']:.0f}", f"{size['scenes']:.0f}", f"{db_mb:.1f}", f"{size['thumbs_mb']:.1f}")
    console.print(sizes)
    save_table("search_size", sizes)


if __name__ == "__main__":
    main()
