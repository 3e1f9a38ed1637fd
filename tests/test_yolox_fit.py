"""A frame goes into YOLOX at its own shape on the CPU (`detector.fit_input`): the input size for a picture, the
graph loaded with a free input size, and the same objects found as through the square input."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from streamvis.config import YoloxConfig
from streamvis.detection import load_detector
from streamvis.detection.yolox import YoloxDetector, fitted_input_hw
from streamvis.detection.yolox_free_size import free_size_graph
from streamvis.errors import ModelError

CONFIDENT = 0.4


@pytest.mark.parametrize(
    ("image_hw", "model_hw", "input_hw"),
    [((432, 768), (416, 416), (256, 416)),     # 16:9 camera: 234 rows at 416/768, padded to 256
     ((1080, 1920), (416, 416), (256, 416)),   # the same shape at another size
     ((480, 640), (416, 416), (320, 416)),     # 4:3
     ((640, 480), (416, 416), (416, 320)),     # portrait
     ((100, 50), (416, 416), (416, 224)),      # small pictures are enlarged as through the square
     ((416, 416), (416, 416), (416, 416)),
     ((1080, 1920), (640, 640), (384, 640))],  # YOLOX-s and larger at 640
)
def test_the_input_holds_the_picture_at_the_squares_scale_in_whole_strides(image_hw, model_hw, input_hw) -> None:
    assert fitted_input_hw(image_hw, model_hw) == input_hw


def test_a_motion_crop_is_enlarged_at_most_max_upscale_whatever_queue_it_takes(models_dir: Path,
                                                                              person_video: Path) -> None:
    """A crop half as high as the frame costs what the whole frame does (288x288 against 416x256) where filling
    the input would cost a square run; a small whole picture is still enlarged to fill the input."""
    from streamvis.config import PipelineConfig
    from streamvis.detection.batched import BatchedDetector
    from streamvis.pipeline.loading import Models
    from streamvis.pipeline.step import Pipeline

    frame = _person_frames(person_video, count=1, every=1)[0]
    fitted = load_detector(YoloxConfig(providers=["cpu"]), models_dir=models_dir)
    assert isinstance(fitted, YoloxDetector) and fitted.max_upscale == 1.25  # detector.max_upscale's default
    queued = BatchedDetector(fitted, max_batch=1, batch_wait_ms=0.0)  # serve's one queue for every stream
    try:
        for detector in (fitted, queued):
            pipeline = Pipeline(PipelineConfig(), Models(detector=detector), 10.0, annotate=False)
            pipeline.detect(frame, np.array([300, 100, 516, 316], np.float32))
            assert fitted.last_input_hw == (288, 288)  # 216 x 1.25 = 270, to the next whole stride
            pipeline.detect(frame)
            assert fitted.last_input_hw == (256, 416)
    finally:
        queued.close()
    fitted.detect(frame[:216, :216])
    assert fitted.last_input_hw == (416, 416)  # a whole picture: enlarged to fill, as through the square
    filling = load_detector(YoloxConfig(providers=["cpu"], max_upscale=None), models_dir=models_dir)
    assert isinstance(filling, YoloxDetector)
    filling.detect_crop(frame[:216, :216])
    assert filling.last_input_hw == (416, 416)


@pytest.mark.parametrize(
    ("image_hw", "max_scale", "input_hw"),
    [((216, 216), None, (416, 416)),    # a motion crop of a 768x432 camera, enlarged 1.93x to fill the input
     ((216, 216), 1.25, (288, 288)),    # enlarged 1.25x: 270, to the next whole stride
     ((216, 384), 1.0, (224, 384)),
     ((432, 768), 1.25, (256, 416))],   # a picture the input shrinks is not touched
)
def test_a_small_picture_is_enlarged_at_most_max_scale(image_hw, max_scale, input_hw) -> None:
    assert fitted_input_hw(image_hw, (416, 416), max_scale) == input_hw


def _person_frames(video: Path, count: int, every: int) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="bgr24") for i, f in zip(range(count * every), container.decode(video=0),
                                                               strict=False) if i % every == 0]
    return frames


def test_a_camera_frame_runs_at_its_own_shape_and_finds_what_the_square_finds(models_dir: Path,
                                                                             person_video: Path) -> None:
    fitted = load_detector(YoloxConfig(providers=["cpu"]), models_dir=models_dir)
    square = load_detector(YoloxConfig(providers=["cpu"], fit_input=False), models_dir=models_dir)
    assert isinstance(fitted, YoloxDetector) and isinstance(square, YoloxDetector)
    assert fitted.fit_input and not square.fit_input
    assert fitted.input_hw == square.input_hw == (416, 416)  # the export's own size, read before freeing it
    missed, total = [], 0
    for index, frame in enumerate(_person_frames(person_video, count=30, every=40)):
        ours, theirs = fitted.detect(frame), square.detect(frame)
        assert fitted.last_input_hw == (256, 416) and square.last_input_hw == (416, 416)
        # boxes near the confidence threshold (0.3) come and go with any change of the input (1 pixel of
        # padding does it); every box the square input is sure of (0.4) is found again, in the same place
        for box, class_id, confidence in zip(theirs.xyxy, theirs.class_id, theirs.confidence, strict=True):
            if confidence < CONFIDENT:
                continue
            total += 1
            same = ours.xyxy[ours.class_id == class_id]
            if not len(same) or sv.box_iou_batch(box[None], same).max() < 0.7:
                missed.append((index, int(class_id), float(confidence)))
    assert total >= 20, "the clip should show people in most of these frames"
    assert not missed, f"boxes of the square input not found again (frame, class, confidence): {missed}"


def test_the_freed_graph_is_the_export_with_only_its_sizes_named(models_dir: Path) -> None:
    """Written on protobuf's wire format: `onnx` reads it as the same graph, the input's H and W and the
    output's anchor axis named, the shapes inferred for the square input gone."""
    import onnx

    weights = models_dir / "yolox-nano" / "yolox_nano.onnx"
    data, input_hw = free_size_graph(weights)
    assert input_hw == (416, 416)
    ours, source = onnx.load_from_string(data), onnx.load(str(weights))
    assert len(source.graph.value_info) > 0 and len(ours.graph.value_info) == 0
    assert [d.dim_param or d.dim_value for d in ours.graph.input[0].type.tensor_type.shape.dim] == \
        [1, 3, "height", "width"]
    assert [d.dim_param or d.dim_value for d in ours.graph.output[0].type.tensor_type.shape.dim] == [1, "anchors", 85]
    for kept in (ours, source):
        del kept.graph.value_info[:], kept.graph.input[:], kept.graph.output[:]
    assert ours.SerializeToString() == source.SerializeToString()  # nodes, weights, opsets, metadata: untouched
    assert YoloxDetector(weights, ["cpu"], fit_input=True).fit_input  # and onnxruntime runs it at other sizes


def _fixed_anchor_export(models_dir: Path, path: Path) -> Path:
    """YOLOX-nano as some exports write it: the head's Reshapes name the anchor count of the square input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(models_dir / "yolox-nano" / "yolox_nano.onnx"))
    reshapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    for initializer, anchors in zip((i for i in model.graph.initializer if i.name in reshapes), (2704, 676, 169),
                                    strict=True):
        initializer.CopyFrom(numpy_helper.from_array(np.array([1, 85, anchors], np.int64), initializer.name))
    onnx.save(model, str(path))
    return path


def test_an_export_that_fixes_its_anchors_keeps_the_square_or_says_why(models_dir: Path, tmp_path: Path) -> None:
    weights = _fixed_anchor_export(models_dir, tmp_path / "fixed.onnx")
    auto = YoloxDetector(weights, ["cpu"])
    assert not auto.fit_input
    found = auto.detect(np.full((432, 768, 3), 114, np.uint8))
    assert auto.last_input_hw == (416, 416) and len(found) == 0
    with pytest.raises(ModelError, match="fixes its size"):
        YoloxDetector(weights, ["cpu"], fit_input=True)


@pytest.mark.parametrize(("change", "message"), [
    ("free_height", r"fixed H and W, found \[1, 3, '\?', 416\]"),
    ("truncated", "is not an ONNX graph with an image input"),
])
def test_a_graph_that_cannot_be_freed_is_named_in_the_error(models_dir: Path, tmp_path: Path, change: str,
                                                            message: str) -> None:
    import onnx

    weights = models_dir / "yolox-nano" / "yolox_nano.onnx"
    path = tmp_path / "model.onnx"
    if change == "free_height":
        model = onnx.load(str(weights))
        model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "h"
        onnx.save(model, str(path))
    else:
        path.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=message):
        free_size_graph(path)


def test_an_older_export_that_lists_its_weights_as_inputs_is_freed_at_its_image(models_dir: Path,
                                                                              tmp_path: Path) -> None:
    """IR 3 graphs name every initializer among the inputs too, some before the image."""
    import onnx
    from onnx import helper

    model = onnx.load(str(models_dir / "yolox-nano" / "yolox_nano.onnx"))
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer]
    image = onnx.ValueInfoProto()
    image.CopyFrom(model.graph.input[0])
    del model.graph.input[:]
    model.graph.input.extend([*weights[:5], image, *weights[5:]])
    model.ir_version = 3
    onnx.save(model, str(tmp_path / "ir3.onnx"))
    detector = YoloxDetector(tmp_path / "ir3.onnx", ["cpu"])
    assert detector.fit_input and detector.input_hw == (416, 416)
    detector.detect(np.full((432, 768, 3), 114, np.uint8))
    assert detector.last_input_hw == (256, 416)
