"""torch against onnxruntime for the SAM 2.1 hiera-tiny image encoder at its real size (random weights).

    .venv/bin/python benchmarks/runtime.py [--repeats 5] [--providers cpu] [--threads N]

Exports the encoder with the dynamo exporter (as `streamvis export` does), checks parity on the timed input,
then times both on the same 1024x1024 input. Target on 2 CPU cores: onnxruntime at least 2x torch.
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

from streamvis.models.onnx_export import SAM2_ENCODER, _Sam2Encoder, export_sam2_encoder, read_manifest
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--providers", nargs="+", default=["tensorrt", "cuda", "cpu"])
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from transformers import Sam2VideoModel

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_sam2_video(Path(tmp) / "sam2.1-hiera-tiny", preset="real")
        model = Sam2VideoModel.from_pretrained(folder).eval()
        start = time.perf_counter()
        export_sam2_encoder(model, "sam2.1-hiera-tiny (random)", Path(tmp) / "onnx")
        export_s = time.perf_counter() - start
        part = read_manifest(Path(tmp) / "onnx", SAM2_ENCODER)["parts"][SAM2_ENCODER]
        session, provider = create_session(Path(tmp) / "onnx" / part["file"], args.providers, "encoder")
        pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
        encoder = _Sam2Encoder(model)
        reference = encoder(pixels)
        got = session.run(None, {"pixel_values": pixels.numpy()})
        max_diff = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, reference, strict=True))
        torch_ms = timed(lambda: encoder(pixels), args.repeats)
        ort_ms = timed(lambda: session.run(None, {"pixel_values": pixels.numpy()}), args.repeats)
    table = Table(title=f"SAM 2.1-tiny image encoder, 1024x1024, random weights, {os.cpu_count()} CPUs, "
                        f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    for column in ("runtime", "p50 ms", "min ms", "runs", "speedup vs torch (p50)"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    torch_p50 = statistics.median(torch_ms)
    table.add_row("torch (fp32)", f"{torch_p50:.0f}", f"{min(torch_ms):.0f}", str(len(torch_ms)), "1.00")
    ort_p50 = statistics.median(ort_ms)
    table.add_row(f"onnxruntime {provider} (fp32)", f"{ort_p50:.0f}", f"{min(ort_ms):.0f}", str(len(ort_ms)),
                  f"{torch_p50 / ort_p50:.2f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"export {export_s:.1f} s; max abs difference onnxruntime vs torch, 6 outputs: {max_diff:.2e}")


if __name__ == "__main__":
    main()
