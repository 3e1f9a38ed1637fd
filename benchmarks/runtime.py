"""torch against onnxruntime (fp32 and int8) at real sizes with random weights: the SAM 2.1 hiera-tiny graphs
(image encoder, memory attention, memory encoder, box decoder) and Florence-2-base `<OD>` end to end (vision
and text encoders + greedy decoding with the KV cache, `--tokens` tokens).

    .venv/bin/python benchmarks/runtime.py [--repeats 5] [--providers tensorrt cuda cpu] [--tokens 20]

Exports as `streamvis export` does (dynamo exporter, then `--int8` quantization), checks parity on the timed
inputs (max abs difference; cosine for int8; identical tokens for Florence-2), then times torch and each
onnxruntime precision through the same IO-binding runner the pipeline uses. On a GPU, torch runs on CUDA and
onnxruntime on the first provider of `--providers` its build offers (TensorRT with fp16 engines).
Targets: on CPU, onnxruntime >= 2x torch for the SAM 2.1 image encoder; on an H100, that encoder <= 4 ms
(TensorRT fp16) and Florence-2-base `<OD>` <= 25 ms end to end.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results import save_table
from rich.console import Console
from rich.table import Table
from timing import timed

from streamvis.runtime.export import read_manifest
from streamvis.runtime.session import OrtRunner
from streamvis.segmentation.sam2_onnx import (
    BOX_DECODER,
    ENCODER,
    MEMORY_ATTENTION,
    MEMORY_ENCODER,
    box_decoder_module,
    encoder_module,
    export_sam2,
    memory_attention_module,
)
from streamvis.testing.models import build_florence2, build_sam2_video

Row = tuple[str, str, list[float], str]  # model, runtime, samples ms, parity note


def parity(got: list[np.ndarray], expected: list[np.ndarray], precision: str) -> str:
    diff = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    if precision == "fp32":
        return f"max diff {diff:.1e}"
    cosine = min(float((g * e).sum() / (np.linalg.norm(g) * np.linalg.norm(e) + 1e-12))
                 for g, e in zip(got, expected, strict=True))
    return f"cos {cosine:.4f}, max diff {diff:.1e}"


def tracking_rows(args: argparse.Namespace, device: str, folder: Path, exports: dict[str, Path]) -> list[Row]:
    """What a stream pays per frame: `VideoSegmenter.update` on a 1280x720 frame carrying one object."""
    from streamvis.config import Sam2Config
    from streamvis.segmentation.video import VideoSegmenterModel
    from streamvis.sources import open_source

    source = open_source(f"synthetic:?w=1280&h=720&frames={args.repeats + 2}&objects=1")
    frames = list(source.frames())
    variants: list[tuple[str | None, dict[str, Any]]] = [(None, {})]
    variants += [(p, {"backend": "onnx", "precision": p, "onnx_dir": str(exports[p])}) for p in exports]
    rows: list[Row] = []
    for precision, extra in variants:
        segmenter = VideoSegmenterModel(Sam2Config(model=str(folder), device=device, **extra)).new_stream()
        segmenter.update(frames[0].image, source.boxes_at(0))  # the prompt, then one warm-up frame
        segmenter.update(frames[1].image)
        samples = []
        for frame in frames[2:]:
            start = time.perf_counter()
            segmenter.update(frame.image)
            samples.append((time.perf_counter() - start) * 1e3)
        runtime = segmenter.provider.split(" + ")[0] if precision else f"torch {device}"
        rows.append(("SAM 2.1-tiny tracking 1 object, per frame", runtime, samples, "stream default parts"))
    return rows


def sam_rows(args: argparse.Namespace, device: str, sync: Callable[[], None], tmp: Path) -> list[Row]:
    from transformers import Sam2VideoModel

    folder = build_sam2_video(tmp / "sam2.1-hiera-tiny", preset="real")
    model = Sam2VideoModel.from_pretrained(folder).eval()
    exports = {p: export_sam2(model, str(folder), tmp / f"sam2-{p}", p) for p in args.precisions}
    rows = tracking_rows(args, device, folder, exports)
    model.to(device)
    rng = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, 1024, 1024, generator=rng)
    with torch.inference_mode():
        features = [f.cpu() for f in encoder_module(model)(pixels.to(device))]
    tokens = 64 * 64
    boxes = torch.tensor([[[100.0, 120, 500, 700], [300, 200, 900, 950], [50, 600, 400, 1000]]])
    cases = {  # part: (torch module, inputs, graph input names, label)
        ENCODER: (encoder_module(model), [pixels], ["pixel_values"], "image encoder 1024x1024"),
        MEMORY_ATTENTION: (memory_attention_module(model),
                           [torch.randn(*shape, generator=rng) for shape in ((tokens, 1, 256), (tokens, 1, 256),
                                                                             (6 * tokens, 1, 64), (6 * tokens, 1, 64),
                                                                             (64, 1, 64), (64, 1, 64))],
                           ["current", "current_pos", "spatial", "spatial_pos", "pointers", "pointers_pos"],
                           "memory attention, 6 frames + 16 pointers"),
        MEMORY_ENCODER: (model.memory_encoder, [torch.randn(1, 256, 64, 64, generator=rng),
                                                torch.randn(1, 1, 1024, 1024, generator=rng)],
                         ["vision_features", "masks"], "memory encoder, 1 object"),
        BOX_DECODER: (box_decoder_module(model), [*features[:3], boxes],
                      ["vision_feats_0", "vision_feats_1", "vision_feats_2", "boxes"], "box decoder, 3 boxes"),
    }
    for part, (module, inputs, names, label) in cases.items():
        on_device = [t.to(device) for t in inputs]
        with torch.inference_mode():
            expected = module(*on_device)
        expected = [t.float().cpu().numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]

        def run_torch(module: Any = module, on_device: list[torch.Tensor] = on_device) -> None:
            with torch.inference_mode():
                module(*on_device)

        rows.append((f"SAM 2.1-tiny {label}", f"torch {device}", timed(run_torch, args.repeats, sync), ""))
        for precision, export in exports.items():
            entry = read_manifest(export, part)["parts"][part]
            runner = OrtRunner(export / entry["file"], args.providers, part)
            feeds = dict(zip(names, on_device, strict=True))
            got = [np.asarray(t.cpu()) for t in runner.run_torch(feeds)]
            rows.append((f"SAM 2.1-tiny {label}", f"onnxruntime {runner.provider} {precision}",
                         timed(lambda runner=runner, feeds=feeds: runner.run(feeds), args.repeats, sync),
                         parity(got, expected, precision)))
    return rows


def florence_rows(args: argparse.Namespace, device: str, sync: Callable[[], None], tmp: Path) -> list[Row]:
    from PIL import Image
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from streamvis.detection.florence2_onnx import OnnxFlorence2, export_florence2

    folder = build_florence2(tmp / "florence2-base", preset="real")
    model = Florence2ForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    model.generation_config.min_new_tokens = args.tokens
    exports = {p: export_florence2(model, processor, "florence2-base", tmp / f"florence-{p}", p)
               for p in args.precisions}
    model.to(device)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8))
    inputs = processor(text=["<OD>"], images=[image], return_tensors="pt")
    reference: list[int] = []

    def run_torch() -> None:
        with torch.inference_mode():
            out = model.generate(**{k: v.to(device) for k, v in inputs.items()}, max_new_tokens=args.tokens,
                                 num_beams=1, do_sample=False)
        reference[:] = out[0].tolist()

    label = f"Florence-2-base <OD>, {args.tokens} tokens"
    rows: list[Row] = [(label, f"torch {device}", timed(run_torch, args.repeats, sync), "")]
    for precision, export in exports.items():
        runner = OnnxFlorence2(export, "florence2-base", model.generation_config, args.providers, precision)
        tokens: list[int] = []

        def run_ort(runner: OnnxFlorence2 = runner, tokens: list[int] = tokens) -> None:
            tokens[:] = runner.generate(inputs["input_ids"].numpy(), inputs["pixel_values"].numpy(),
                                        inputs["attention_mask"].numpy(), args.tokens)[0]

        samples = timed(run_ort, args.repeats, sync)
        same = sum(a == b for a, b in zip(tokens, reference, strict=False))
        rows.append((label, f"onnxruntime {runner.provider} {precision}", samples,
                     f"{same}/{len(reference)} tokens as torch"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--providers", nargs="+", default=["tensorrt", "cuda", "cpu"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--only", choices=["sam2", "florence2"], default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sam2"):
            rows += sam_rows(args, device, sync, Path(tmp))
        if args.only in (None, "florence2"):
            rows += florence_rows(args, device, sync, Path(tmp))
    gpu = torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPUs"
    table = Table(title=f"torch vs onnxruntime, random weights at real sizes, {gpu}, "
                        f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    for column in ("model", "runtime", "p50 ms", "min ms", "speedup vs torch", "parity"):
        table.add_column(column, justify="left" if column in ("model", "runtime", "parity") else "right")
    baseline: dict[str, float] = {}
    for model_name, runtime, samples, note in rows:
        p50 = statistics.median(samples)
        baseline.setdefault(model_name, p50)
        table.add_row(model_name, runtime, f"{p50:.1f}", f"{min(samples):.1f}", f"{baseline[model_name] / p50:.2f}",
                      note)
    Console(width=170).print(table)
    save_table("runtime", table)


if __name__ == "__main__":
    main()
