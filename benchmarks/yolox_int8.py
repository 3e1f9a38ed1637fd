"""YOLOX int8 (static, calibrated) against fp32 in one run: COCO mAP@0.5:0.95 on coco128 and detector speed.

    .venv/bin/python benchmarks/yolox_int8.py [--models-dir ../shared/models] [--coco128 DIR] [--calibrate SRC]

Exports, in this run, the int8 copies `streamvis export yolox-nano --int8 --calibrate SRC` makes (7-bit and 8-bit
weights), then for fp32 and each copy: mAP on coco128 (confidence 0.001, NMS IoU 0.65, as COCO evaluation does)
and the mean milliseconds of `detect` on coco128's images with 1 onnxruntime thread (as `process` runs it) and
with onnxruntime's default. The int8 option would be a default only if its mAP stayed within 0.005 of fp32 on
both CPU classes (AVX2 without VNNI, AVX-512 VNNI).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis import env
from streamvis.detection.yolox import YoloxDetector
from streamvis.detection.yolox_int8 import calibration_frames, quantize_yolox
from streamvis.runtime.precision import cpu_int8_class

ROOT = Path(__file__).resolve().parent.parent
MAP_TOLERANCE = 0.005


def detect_ms(weights: Path, images: list, threads: int | None) -> float:
    detector = YoloxDetector(weights, ["cpu"], threads=threads)
    detector.detect(images[0])
    start = time.perf_counter()
    for image in images:
        detector.detect(image)
    return (time.perf_counter() - start) / len(images) * 1e3


def main() -> None:
    from streamvis.testing.coco import coco_map

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, default=Path(env.models_dir() or ROOT.parent / "shared/models"))
    parser.add_argument("--coco128", type=Path, default=ROOT.parent / "shared" / "media" / "coco128")
    parser.add_argument("--calibrate", default=None, help="images or video to calibrate on (default: coco128)")
    args = parser.parse_args()
    fp32 = args.models_dir / "yolox-nano" / "yolox_nano.onnx"
    calibrate = args.calibrate or str(args.coco128 / "images" / "train2017")
    images = [cv2.imread(str(p)) for p in sorted((args.coco128 / "images" / "train2017").glob("*.jpg"))]
    table = Table(title=f"YOLOX-nano int8 vs fp32 on coco128 ({len(images)} images); this CPU: {cpu_int8_class()}; "
                        f"calibrated on {Path(calibrate).name}")
    for column in ("graph", "mAP@0.5:0.95", "vs fp32", "ms (1 thread)", "ms (default threads)", "speed-up (1 thread)"):
        table.add_column(column, justify="left" if column == "graph" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"fp32": fp32}
        for label, int8_range in (("int8, 7-bit weights", "reduced"), ("int8, 8-bit weights", "full")):
            graphs[label] = quantize_yolox(fp32, Path(tmp) / f"{int8_range}.onnx", calibration_frames(calibrate),
                                           int8_range)  # type: ignore[arg-type]
        base_map = base_ms = 0.0
        for label, weights in graphs.items():
            score = coco_map(args.coco128, YoloxDetector(weights, ["cpu"], confidence=0.001, nms_iou=0.65))
            one, default = detect_ms(weights, images, 1), detect_ms(weights, images, None)
            if label == "fp32":
                base_map, base_ms = score, one
            delta = score - base_map
            verdict = "" if label == "fp32" else (" ✓" if abs(delta) <= MAP_TOLERANCE else " ✗")
            table.add_row(label, f"{score:.4f}", f"{delta:+.4f}{verdict}", f"{one:.1f}", f"{default:.1f}",
                          f"{base_ms / one:.2f}x")
    Console(width=150).print(table)
    save_table("yolox_int8", table)


if __name__ == "__main__":
    main()
