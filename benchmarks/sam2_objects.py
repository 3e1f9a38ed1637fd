"""SAM 2.1 propagation with 1, 4 and 8 tracked objects: one object at a time (transformers' forward) against
the objects batched (`segmenter.batch_objects`), at the real SAM 2.1 hiera-tiny size with random weights.

    .venv/bin/python benchmarks/sam2_objects.py [--repeats 3] [--objects 1 4 8] [--device auto|cpu|cuda]
                                                 [--dtype auto|float32|bfloat16|float16] [--preset real|tiny]

Both run the same stream segmenter on the same 720p frame with a full memory window (6 memory frames, 16 object
pointers); each step is timed whole (image encoder included), and the encoder alone is timed once so the part
that batching changes (memory attention, mask decoder, memory encoder) can be read off. The masks of both are
compared in the same run (the same object ids; mask IoU, since a pixel whose logit rounds across the threshold
may flip).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from models import boxes, frame_720p, percentiles
from results import save_table
from rich.console import Console
from rich.table import Table
from timing import timed

from streamvis.config import Sam2Config
from streamvis.segmentation.processing import preprocess_square
from streamvis.segmentation.video import VideoSegmenter, VideoSegmenterModel
from streamvis.testing.models import build_sam2_video


def warmed(model: VideoSegmenterModel, image: np.ndarray, count: int) -> VideoSegmenter:
    """A stream with `count` objects prompted and the memory window filled."""
    stream = model.new_stream()
    stream.update(image, boxes(count))
    for _ in range(model.num_maskmem + 1):
        stream.update(image, None)
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--preset", default="real", choices=["real", "tiny"], help="tiny: a quick dry run")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    image = frame_720p()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_sam2_video(Path(tmp) / "sam2.1", preset=args.preset)
        models = {flag: VideoSegmenterModel(Sam2Config(model=str(folder), device=args.device, dtype=args.dtype,
                                                       batch_objects=flag)) for flag in (False, True)}
    per_object, batched = models[False], models[True]
    batched.model = per_object.model  # one set of weights for both
    device = per_object.device

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    pixels = torch.from_numpy(preprocess_square(image, per_object.image_size))[None].to(device, per_object.dtype)
    encoder_ms, _ = percentiles(timed(lambda: per_object.model.get_image_features(pixels), args.repeats, sync))
    table = Table(title=f"SAM 2.1 propagation step ({args.preset} size, {per_object.provider}), per object vs "
                        f"batched; {os.cpu_count()} CPUs, {platform.machine()}, torch {torch.__version__}; "
                        f"image encoder alone {encoder_ms:.1f} ms")
    for column in ("objects", "step, per object ms", "step, batched ms", "speed-up",
                   "step less encoder, per object ms", "less encoder, batched ms", "speed-up ",
                   "same ids, mask IoU min"):
        table.add_column(column, justify="right")
    for count in args.objects:
        streams = {flag: warmed(model, image, count) for flag, model in models.items()}
        pairs = [(streams[False].update(image, None), streams[True].update(image, None)) for _ in range(2)]
        ious = [float((m1 & m2).sum() / max(1, (m1 | m2).sum())) for a, b in pairs
                for m1, m2 in zip(a.mask, b.mask, strict=True)]
        same_ids = all(a.tracker_id.tolist() == b.tracker_id.tolist() for a, b in pairs)
        one, many = (percentiles(timed(lambda s=streams[flag]: s.update(image, None), args.repeats, sync))[0]
                     for flag in (False, True))
        row = (str(count), f"{one:.1f}", f"{many:.1f}", f"{one / many:.2f}x", f"{one - encoder_ms:.1f}",
               f"{many - encoder_ms:.1f}", f"{(one - encoder_ms) / max(many - encoder_ms, 1e-6):.2f}x",
               f"{'yes' if same_ids else 'NO'}, {min(ious, default=1.0):.4f}")
        table.add_row(*row)
        print(" | ".join(row), file=sys.stderr, flush=True)  # as it goes: 8 objects take minutes on a CPU
    Console(width=200).print(table)
    save_table("sam2_objects", table)


if __name__ == "__main__":
    main()
