"""Per-model latency at the published sizes with random weights: SAM 2.1 image encoders (tiny, small, base+, large
at 1024x1024), SAM 2.1-tiny propagation steps with 1, 4, 8 objects (one object at a time against batched), the
Florence-2 base and large `<OD>` answer (50 tokens, about ten objects), EdgeTAM; in fp32, fp16 and bf16, eager and
compiled. Random weights have the real architectures, so the times are what the checkpoints cost."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch
from report import Deadline, Report, p50_p95

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: the timing the others use
from timing import timed

from streamvis.config import Sam2Config
from streamvis.segmentation.video import VideoSegmenter, VideoSegmenterModel
from streamvis.testing.models import build_sam2_video, random_florence2, random_sam2_video

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CONFIG_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(slots=True)
class Context:
    device: str
    quick: bool
    deadline: Deadline
    repeats: int

    @property
    def preset(self) -> str:
        return "tiny" if self.quick else "real"

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def time(self, fn: Callable[[], object], warmup: int = 2) -> tuple[float, float]:
        return p50_p95(timed(fn, self.repeats, self.sync, warmup))


def frame(height: int = 1080, width: int = 1920, seed: int = 0) -> np.ndarray:
    """A test frame: grey with coloured blocks (what the detector and segmenter see does not change the cost)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 90, np.uint8)
    for _ in range(12):
        y, x = int(rng.integers(0, height * 3 // 4)), int(rng.integers(0, width * 7 // 8))
        image[y:y + height // 5, x:x + width // 9] = rng.integers(0, 255, 3)
    return image


def boxes(count: int, width: int = 1920, height: int = 1080) -> sv.Detections:
    """`count` boxes spread over the frame (prompts for SAM 2)."""
    cols = 4
    w, h = width // (cols + 1), height // 3
    xyxy = np.array([[(i % cols) * w + w // 4, (i // cols) * h + h // 4, (i % cols) * w + w, (i // cols) * h + h]
                     for i in range(count)], np.float32)
    return sv.Detections(xyxy=xyxy, confidence=np.ones(count, np.float32), class_id=np.zeros(count, int),
                         data={"class_name": np.array(["object"] * count)})


def _compile_time(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def sam2_encoders(report: Report, ctx: Context) -> None:
    table = report.table("SAM 2.1 image encoder" + (" (tiny test size, 256x256)" if ctx.quick else ", 1024x1024"),
                         ["model", "dtype", "mode", "batch", "p50 ms", "p95 ms", "ms per frame", "first call s"])
    variants = ["tiny"] if ctx.quick else ["tiny", "small", "base-plus", "large"]
    dtypes = ["fp32"] if ctx.quick else ["fp32", "fp16", "bf16"]
    compiled = [("tiny", "fp32")] if ctx.quick else [("tiny", "bf16"), ("large", "bf16")]
    for variant in variants:
        if not ctx.deadline.allows(60):
            table.notes.append(f"stopped before {variant}: the run's time budget was nearly spent")
            break
        model = random_sam2_video(ctx.preset, variant=variant, device=ctx.device)
        size = int(model.config.image_size) if not isinstance(model.config.image_size, list) else \
            int(model.config.image_size[0])
        for name in dtypes:
            model.to(DTYPES[name])
            for batch in ([1, 8] if (variant == "tiny" and name != "fp32") else [1]):
                pixels = torch.randn(batch, 3, size, size, device=ctx.device, dtype=DTYPES[name])
                with torch.inference_mode():
                    p50, p95 = ctx.time(lambda m=model, p=pixels: m.get_image_features(p))
                table.add(f"sam2.1-{variant}", name, "eager", batch, p50, p95, p50 / batch, None)
        for _, name in [c for c in compiled if c[0] == variant]:
            if not ctx.deadline.allows(90):
                table.notes.append(f"compiled {variant} left out: time budget")
                continue
            model.to(DTYPES[name])
            encoder = model.vision_encoder
            mode = "reduce-overhead" if ctx.device == "cuda" else "default"
            encoder.forward = torch.compile(encoder.forward, mode=mode)
            pixels = torch.randn(1, 3, size, size, device=ctx.device, dtype=DTYPES[name])
            with torch.inference_mode():
                first = _compile_time(lambda m=model, p=pixels: m.get_image_features(p), ctx.sync)
                p50, p95 = ctx.time(lambda m=model, p=pixels: m.get_image_features(p), warmup=3)
            table.add(f"sam2.1-{variant}", name, f"compiled ({mode})", 1, p50, p95, p50, round(first, 1))
        del model
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    table.notes.append("target on an H100/H200: SAM 2.1-tiny encoder <= 4 ms")
    report.write()


def _warmed(model: VideoSegmenterModel, image: np.ndarray, count: int) -> VideoSegmenter:
    stream = model.new_stream()
    stream.update(image, boxes(count, image.shape[1], image.shape[0]))
    for _ in range(model.num_maskmem + 1):  # a full memory window: every later step reads 6 frames + pointers
        stream.update(image, None)
    return stream


def sam2_propagation(report: Report, ctx: Context, folder: Path, kind: str = "sam2") -> None:
    label = "SAM 2.1-tiny" if kind == "sam2" else "EdgeTAM"
    table = report.table(f"{label} propagation step (1080p frame, full memory window)",
                         ["model", "dtype", "objects", "mode", "step p50 ms", "step p95 ms", "pre ms",
                          "model ms", "post ms", "model ms per object"])
    image = frame() if not ctx.quick else frame(96, 160)
    dtypes = ["fp32"] if ctx.quick else ["fp32", "bf16"]
    counts = [2] if ctx.quick else ([1, 4, 8] if kind == "sam2" else [1, 4])
    modes: list[tuple[str, dict[str, Any]]] = [("per object", {"batch_objects": False}),
                                               ("batched", {"batch_objects": True})]
    if kind == "sam2" and not ctx.quick:
        modes.append(("batched, compiled", {"batch_objects": True, "cuda_graphs": True,
                                            "compile": ["memory_attention", "mask_decoder", "memory_encoder"]}))
    if kind != "sam2":
        modes = [("model forward", {})]
    for name in dtypes:
        for mode, settings in modes:
            if not ctx.deadline.allows(75):
                table.notes.append(f"stopped before {name} {mode}: time budget")
                report.write()
                return
            if "compile" in settings and name == "fp32":
                continue  # the compiled rows are measured in bf16, the precision a GPU deployment uses
            config: dict[str, Any] = dict(model=str(folder), device=ctx.device, dtype=CONFIG_DTYPES[name], **settings)
            model = VideoSegmenterModel(Sam2Config(**config)) if kind == "sam2" else _edgetam(folder, ctx, name)
            for count in counts:
                stream = _warmed(model, image, count)
                p50, p95 = ctx.time(lambda s=stream: s.update(image, None), warmup=3 if "compile" in settings else 1)
                stages: dict[str, list[float]] = {}
                for _ in range(3):  # where a step's time goes: pre-processing, the model, masks to the frame
                    stream.update(image, None)
                    for stage, ms in stream.last_timings_ms.items():
                        stages.setdefault(stage, []).append(ms)
                pre, core, post = (float(np.median(stages.get(k, [0.0]))) for k in
                                   ("segment_pre", "segment", "segment_post"))
                table.add(label, name, count, mode, p50, p95, pre, core, post, core / count)
            report.write()
    table.notes.append("model ms: SAM 2's own step (image encoder, memory attention, mask decoder, memory encoder); "
                       "pre: the frame to the model's input; post: masks up to the frame's size, boxes from masks")
    table.notes.append("target on an H100/H200: propagation <= 6 ms for 4 objects (SAM 2.1-tiny)")


def _edgetam(folder: Path, ctx: Context, dtype: str) -> VideoSegmenterModel:
    from streamvis.config import EdgeTamConfig

    return VideoSegmenterModel(EdgeTamConfig(model=str(folder), device=ctx.device, dtype=CONFIG_DTYPES[dtype]))


def florence2(report: Report, ctx: Context) -> None:
    from PIL import Image

    table = report.table("Florence-2 <OD>, 50 tokens (about ten objects), greedy",
                         ["model", "dtype", "mode", "batch", "p50 ms", "p95 ms", "ms per frame", "first call s"])
    tokens = 8 if ctx.quick else 50
    image = Image.fromarray(frame(*((96, 160) if ctx.quick else (1080, 1920)))[:, :, ::-1].copy())
    plans = [("base", "fp32", "eager", 1)] + ([("base", "fp32", "static cache, compiled", 1)] if ctx.quick else [
        ("base", "fp32", "eager", 1), ("base", "fp16", "eager", 1), ("base", "bf16", "eager", 1),
        ("base", "bf16", "eager", 8), ("base", "bf16", "static cache, compiled", 1),
        ("large", "fp16", "eager", 1), ("large", "bf16", "eager", 1), ("large", "bf16", "static cache, compiled", 1)])
    plans = list(dict.fromkeys(plans))
    loaded: dict[str, tuple[Any, Any]] = {}
    for variant, name, mode, batch in plans:
        if not ctx.deadline.allows(60 if "compiled" not in mode else 100):
            table.notes.append(f"stopped before {variant} {name} {mode}: time budget")
            break
        if variant not in loaded:
            loaded.clear()
            if ctx.device == "cuda":
                torch.cuda.empty_cache()
            loaded[variant] = random_florence2(ctx.preset, variant=variant, device=ctx.device)
        model, processor = loaded[variant]
        model.to(DTYPES[name])
        model.generation_config.min_new_tokens = tokens
        model.generation_config.max_new_tokens = tokens
        if "compiled" in mode:
            from streamvis.runtime.torch_compile import static_decoding

            static_decoding(model, ctx.device, cuda_graphs=True)
        else:
            model.generation_config.cache_implementation = None
            model.generation_config.compile_config = None
        inputs = processor(text=["<OD>"] * batch, images=[image] * batch, return_tensors="pt").to(ctx.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(DTYPES[name])

        def answer(m: Any = model, i: Any = inputs) -> None:
            with torch.inference_mode():
                m.generate(**i, do_sample=False, num_beams=1)

        first = _compile_time(answer, ctx.sync) if "compiled" in mode else None
        p50, p95 = ctx.time(answer, warmup=2)
        table.add(f"florence-2-{variant}", name, mode, batch, p50, p95, p50 / batch,
                  None if first is None else round(first, 1))
        report.write()
    table.notes.append("target on an H100/H200: Florence-2-base <OD> <= 25 ms")


def run(report: Report, ctx: Context) -> None:
    sam2_encoders(report, ctx)
    with tempfile.TemporaryDirectory() as tmp:
        sam2_propagation(report, ctx, build_sam2_video(Path(tmp) / "sam2.1-tiny", preset=ctx.preset))
    florence2(report, ctx)
    try:
        import timm  # noqa: F401  (EdgeTAM's published backbone)
    except ImportError:
        if not ctx.quick:
            report.table("EdgeTAM", ["note"]).add("left out: timm is not installed")
            report.write()
            return
    if ctx.deadline.allows(90):
        with tempfile.TemporaryDirectory() as tmp:
            preset = "tiny" if ctx.quick else "real"
            sam2_propagation(report, ctx, build_sam2_video(Path(tmp) / "edgetam", preset=preset, kind="edgetam"),
                             kind="edgetam")
