"""The prepared GPU check: everything streamvis needs to know about a GPU, measured in one device call.

    # on the lent machine (benchmarks/gpu/device.sh installs the carried wheels first):
    python3 benchmarks/gpu/check.py --out "$OUT" [--budget-s 420]
    # the dry run CI makes of the same script, with tiny models on the CPU:
    .venv/bin/python benchmarks/gpu/check.py --quick --device cpu --out out/gpu-dry-run

Sections, in order, each written to OUT/gpu_check.md and OUT/gpu_check.json as soon as it is done (a run cut
short keeps what it measured): the environment (GPU, versions, onnxruntime's providers); `tests/test_gpu.py`;
the parity of streamvis's SAM 2 pre- and post-processing with transformers' `Sam2VideoVideoProcessor`
(torchvision is there); per-model latency (`latency.py`); `process` fps and live density (`pipelines.py`). Every
section watches one time budget and leaves out what would not fit; one that fails is recorded and the next runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from latency import Context, frame
from report import Deadline, Report

ROOT = Path(__file__).resolve().parents[2]


def _version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "?"))


def environment(report: Report, ctx: Context) -> None:
    table = report.table("Environment", ["what", "value"])
    table.add("python", platform.python_version())
    table.add("torch", f"{torch.__version__} (CUDA {torch.version.cuda})")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        table.add("GPU", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                         f"compute {props.major}.{props.minor}")
    else:
        table.add("GPU", "none (CPU run)")
    for name in ("transformers", "torchvision", "timm", "onnx", "av", "supervision", "pydantic"):
        table.add(name, _version(name))
    try:
        import onnxruntime

        table.add("onnxruntime", f"{onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}")
    except ImportError:
        table.add("onnxruntime", "not installed")
    table.add("CPUs", str(os.cpu_count()))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    table.add("streamvis commit", commit.stdout.strip() or "unknown (no .git)")
    table.add("device, quick", f"{ctx.device}, {ctx.quick}")
    report.write()


def gpu_tests(report: Report, ctx: Context) -> None:
    table = report.table("tests/test_gpu.py", ["result", "seconds"])
    start = time.monotonic()
    budget = max(30, min(150, ctx.deadline.left() - 300))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                               "tests/test_gpu.py"], cwd=ROOT, capture_output=True, text=True, timeout=budget)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        table.add(lines[-1] if lines else f"pytest exited {done.returncode}", round(time.monotonic() - start, 1))
        table.notes += [line for line in lines if line.startswith(("FAILED", "ERROR", "SKIPPED"))][:12]
    except subprocess.TimeoutExpired:
        table.add(f"timed out after {budget:.0f} s", budget)
    report.write()


def parity(report: Report, ctx: Context) -> None:
    """streamvis's SAM 2 pre-processing (host: OpenCV; device: torch) and mask post-processing against
    transformers' own video processor, which needs torchvision."""
    from streamvis.segmentation.processing import preprocess_square, preprocess_square_on, upsample_masks

    table = report.table("SAM 2 processing parity with transformers' Sam2VideoVideoProcessor",
                         ["what", "frame", "max abs diff", "mean abs diff", "mask IoU (min)"])
    try:
        from transformers import Sam2VideoVideoProcessor

        processor = Sam2VideoVideoProcessor()
    except Exception as exc:  # no torchvision: transformers' SAM processors cannot load
        table.notes.append(f"left out: the processor cannot load here ({type(exc).__name__}: {exc})"[:300])
        report.write()
        return
    gradient = np.dstack([np.tile(np.linspace(0, 255, 1920, dtype=np.float32), (1080, 1)).astype(np.uint8)] * 3)
    for name, image in (("1080p blocks", frame()), ("1080p gradient", gradient), ("480p blocks", frame(480, 640))):
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        out = processor(videos=[[rgb]], return_tensors="pt")
        reference = next(v for v in out.values() if hasattr(v, "ndim") and v.ndim >= 4).float().reshape(-1, 3, 1024,
                                                                                                           1024)[0]
        for path, ours in (("pre-processing, host (OpenCV)", torch.from_numpy(preprocess_square(image, 1024))),
                           ("pre-processing, device (torch)",
                            preprocess_square_on(image, 1024, ctx.device, torch.float32).cpu())):
            diff = (ours - reference).abs()
            table.add(path, name, float(diff.max()), float(diff.mean()), None)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 64, 64, generator=generator)
    logits = torch.nn.functional.interpolate(logits, size=(256, 256), mode="bilinear")  # smooth, mask-like
    for height, width in ((1080, 1920), (480, 640)):
        reference = processor.post_process_masks([logits], original_sizes=[(height, width)],
                                                 reshaped_input_sizes=[(1024, 1024)])[0][:, 0].numpy()
        ours = upsample_masks(logits[:, 0], (width, height))
        ious = [(a & b).sum() / max(1, (a | b).sum()) for a, b in zip(ours, reference, strict=True)]
        table.add("mask post-processing (256 -> frame)", f"{height}p", None, None, float(min(ious)))
    report.write()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/gpu-check")))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny models, few repeats: the CI dry run")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new work after this long")
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["environment", "tests", "parity", "latency", "pipelines"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_grad_enabled(False)
    ctx = Context(args.device, args.quick, Deadline(args.budget_s), repeats=3 if args.quick else 20)
    report = Report(args.out)
    import latency

    import pipelines

    sections = {"environment": environment, "tests": gpu_tests, "parity": parity, "latency": latency.run,
                "pipelines": pipelines.run}
    for name, section in sections.items():
        if args.only is not None and name not in args.only:
            continue
        started = time.monotonic()
        try:
            section(report, ctx)
        except Exception as exc:  # one broken section must not cost the others' figures
            failed = report.table(f"{name}: failed", ["error"])
            failed.add(f"{type(exc).__name__}: {exc}"[:500])
            failed.notes += traceback.format_exc().splitlines()[-8:]
            report.write()
        print(f"[gpu check] {name}: {time.monotonic() - started:.1f} s, {ctx.deadline.left():.0f} s left",
              flush=True)
    print((args.out / "gpu_check.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
