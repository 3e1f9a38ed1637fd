"""torch against onnxruntime at real sizes (random weights): the SAM 2.1 hiera-tiny image encoder and
Florence-2-base `<OD>` end to end (encoder + greedy decoding with the KV cache, `--tokens` tokens).

    .venv/bin/python benchmarks/runtime.py [--repeats 5] [--providers tensorrt cuda cpu] [--tokens 20]

Exports with the dynamo exporter (as `streamvis export` does), checks parity on the timed inputs (max abs
difference for the encoder, identical tokens for Florence-2), then times both. Target on 2 CPU cores:
onnxruntime at least 2x torch for the SAM 2.1 image encoder.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from streamvis.models.onnx_export import SAM2_ENCODER, export_sam2_encoder, read_manifest, sam2_encoder_module
from streamvis.models.onnx_session import create_session
from streamvis.models.random_init import build_sam2_video


def timed(fn, repeats: int) -> list[float]:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def florence_rows(args: argparse.Namespace) -> list[tuple[str, list[float], list[float], bool]]:
    """Florence-2-base `<OD>` with exactly `--tokens` tokens, torch generate against the onnxruntime loop."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from streamvis.models.florence2_onnx import OnnxFlorence2, export_florence2
    from streamvis.models.random_init import build_florence2

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_florence2(Path(tmp) / "florence2-base", preset="real")
        model = Florence2ForConditionalGeneration.from_pretrained(folder).eval()
        processor = AutoProcessor.from_pretrained(folder)
        model.generation_config.min_new_tokens = args.tokens
        export_florence2(model, processor, "florence2-base (random)", Path(tmp) / "onnx")
        runner = OnnxFlorence2(Path(tmp) / "onnx", "florence2-base (random)", model.generation_config,
                               args.providers)
        from PIL import Image

        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8))
        inputs = processor(text=["<OD>"], images=[image], return_tensors="pt")
        torch_tokens: list[int] = []

        def run_torch() -> None:
            out = model.generate(**inputs, max_new_tokens=args.tokens, num_beams=1, do_sample=False)
            torch_tokens[:] = out[0].tolist()

        ort_tokens: list[int] = []

        def run_ort() -> None:
            ort_tokens[:] = runner.generate(inputs["input_ids"].numpy(), inputs["pixel_values"].numpy(),
                                            inputs["attention_mask"].numpy(), args.tokens)[0]

        t_ms = timed(run_torch, args.repeats)
        o_ms = timed(run_ort, args.repeats)
    return [(f"Florence-2-base <OD>, {args.tokens} tokens", t_ms, o_ms, torch_tokens == ort_tokens)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--providers", nargs="+", default=["tensorrt", "cuda", "cpu"])
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from transformers import Sam2VideoModel

    florence = florence_rows(args)

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_sam2_video(Path(tmp) / "sam2.1-hiera-tiny", preset="real")
        model = Sam2VideoModel.from_pretrained(folder).eval()
        start = time.perf_counter()
        export_sam2_encoder(model, "sam2.1-hiera-tiny (random)", Path(tmp) / "onnx")
        export_s = time.perf_counter() - start
        part = read_manifest(Path(tmp) / "onnx", SAM2_ENCODER)["parts"][SAM2_ENCODER]
        session, provider = create_session(Path(tmp) / "onnx" / part["file"], args.providers, "encoder")
        pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
        encoder = sam2_encoder_module(model)
        reference = encoder(pixels)
        got = session.run(None, {"pixel_values": pixels.numpy()})
        max_diff = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, reference, strict=True))
        torch_ms = timed(lambda: encoder(pixels), args.repeats)
        ort_ms = timed(lambda: session.run(None, {"pixel_values": pixels.numpy()}), args.repeats)
    table = Table(title=f"torch vs onnxruntime, random weights at real sizes, {os.cpu_count()} CPUs, "
                        f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    for column in ("runtime", "p50 ms", "min ms", "runs", "speedup vs torch (p50)"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    torch_p50 = statistics.median(torch_ms)
    sam = "SAM 2.1-tiny encoder 1024x1024"
    table.add_row(f"{sam}: torch", f"{torch_p50:.0f}", f"{min(torch_ms):.0f}", str(len(torch_ms)), "1.00")
    ort_p50 = statistics.median(ort_ms)
    table.add_row(f"{sam}: onnxruntime {provider}", f"{ort_p50:.0f}", f"{min(ort_ms):.0f}", str(len(ort_ms)),
                  f"{torch_p50 / ort_p50:.2f}")
    for label, t_ms, o_ms, same in florence:
        table.add_row(f"{label}: torch", f"{statistics.median(t_ms):.0f}", f"{min(t_ms):.0f}", str(len(t_ms)), "1.00")
        table.add_row(f"{label}: onnxruntime ({'same tokens' if same else 'TOKENS DIFFER'})",
                      f"{statistics.median(o_ms):.0f}", f"{min(o_ms):.0f}", str(len(o_ms)),
                      f"{statistics.median(t_ms) / statistics.median(o_ms):.2f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"export {export_s:.1f} s; max abs difference onnxruntime vs torch, 6 outputs: {max_diff:.2e}")


if __name__ == "__main__":
    main()
