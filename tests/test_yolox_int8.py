"""`streamvis export yolox-nano --int8 --calibrate ...`: a static int8 copy of the real detector, made and used as a
user would (the CLI, then `detector.model: <file>`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import onnx
import pytest
import supervision as sv
from support import MEDIA, MODELS, YOLOX_NANO, need, run_cli

from streamvis.config import YoloxConfig
from streamvis.detection import load_detector
from streamvis.detection.yolox_int8 import kept_fp32


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    coco128 = MEDIA / "coco128"
    need(YOLOX_NANO)
    need(coco128)
    target = tmp_path_factory.mktemp("int8") / "nano.int8.onnx"
    result = run_cli("export", "yolox-nano", "--int8", "--calibrate", str(coco128 / "images" / "train2017"),
                     "--calibration-frames", "32", "--output", str(target), "--models-dir", str(MODELS))
    assert result.returncode == 0, result.stderr
    assert "calibrated on 32 frames" in result.stderr and f"detector.model={target}" in result.stderr
    return target


def test_convolutions_become_int8_except_the_sensitive_ones(int8_model: Path, models_dir: Path) -> None:
    source = onnx.load(str(models_dir / "yolox-nano" / "yolox_nano.onnx"))
    quantized = onnx.load(str(int8_model))
    convs = {node.name: node for node in quantized.graph.node if node.op_type == "Conv"}
    produced_by_dequantize = {node.output[0] for node in quantized.graph.node if node.op_type == "DequantizeLinear"}
    int8_convs = {name for name, node in convs.items() if node.input[1] in produced_by_dequantize}
    kept = set(kept_fp32(source))
    source_convs = [n.name for n in source.graph.node if n.op_type == "Conv"]
    assert source_convs[0] in kept  # the first convolution, on raw pixels
    assert len(kept) == 1 + 30 + 9  # the first, the 30 depthwise, the 9 prediction convolutions of nano
    assert int8_convs == set(convs) - kept and len(int8_convs) == len(source_convs) - len(kept)


def test_the_int8_copy_finds_what_fp32_finds(int8_model: Path, models_dir: Path, coco128: Path) -> None:
    fp32 = load_detector(YoloxConfig(providers=["cpu"]), models_dir=models_dir)
    int8 = load_detector(YoloxConfig(model=str(int8_model), providers=["cpu"]))
    assert int8.class_names == fp32.class_names  # COCO's names, the default without a classes file
    matched = total = 0
    for path in sorted((coco128 / "images" / "train2017").glob("*.jpg"))[:16]:
        image = cv2.imread(str(path))
        want, got = fp32.detect(image), int8.detect(image)
        confident = want[want.confidence > 0.5]
        for box, cls in zip(confident.xyxy, confident.class_id, strict=True):
            total += 1
            same_class = got[got.class_id == cls]
            if len(same_class) and sv.box_iou_batch(box[None], same_class.xyxy).max() >= 0.7:
                matched += 1
    assert total >= 20
    assert matched >= 0.9 * total, f"the int8 copy found {matched} of fp32's {total} confident objects"


def test_calibration_from_a_video(tmp_path: Path, car_video: Path, models_dir: Path) -> None:
    target = tmp_path / "car.int8.onnx"
    result = run_cli("export", "yolox-nano", "--int8", "--calibrate", str(car_video), "--calibration-frames", "8",
                     "--output", str(target), "--models-dir", str(models_dir))
    assert result.returncode == 0, result.stderr
    assert "calibrated on 8 frames" in result.stderr and target.is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--int8"], "export --int8 --calibrate IMAGES_OR_VIDEO makes its int8 copy"),
    (["--calibrate", "."], "export --int8 --calibrate IMAGES_OR_VIDEO makes its int8 copy"),
    (["--int8", "--calibrate", "/no/such/folder"], "calibration input not found: /no/such/folder"),
])
def test_export_of_yolox_says_what_is_missing(args: list[str], message: str, models_dir: Path) -> None:
    result = run_cli("export", "yolox-nano", *args, "--models-dir", str(models_dir))
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
