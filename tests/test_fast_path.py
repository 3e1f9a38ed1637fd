"""The fast torch path, each setting against eager fp32 on the CPU with tiny random models, within stated
tolerances: compiled SAM 2.1 parts and Florence-2's compiled decode step over a static KV cache (identical
answers), SDPA against eager attention, half precisions, and pre-processing on the model's device."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
import torch
from support import TinyModels

from streamvis.config import Florence2Config, Sam2Config, load_pipeline
from streamvis.detection.florence2 import Florence2Detector, Florence2Model
from streamvis.errors import ConfigError
from streamvis.runtime.torch_compile import compile_mode
from streamvis.segmentation.processing import preprocess_square, preprocess_square_on
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.sources import open_source

# mask IoU against eager fp32 on a tracked clip, each object on each frame: (least, mean), measured on an AVX2 CPU
# with room for other CPUs (bfloat16 is emulated on CPUs without AVX-512 BF16, natively computed on others)
TOLERANCES = {
    "attention=eager": (0.99, 0.999),
    "dtype=float16": (0.95, 0.98),
    "dtype=bfloat16": (0.85, 0.95),
    "preprocess=device": (0.95, 0.99),
}


def track(model: VideoSegmenterModel, frames: int = 10, size: str = "w=320&h=192", objects: int = 3,
          every: int = 5) -> list:
    """A stream of the synthetic pattern through `model`, its ground truth as keyframe detections."""
    stream = model.new_stream()
    source = open_source(f"synthetic:?{size}&frames={frames}&objects={objects}&seed=4")
    return [stream.update(f.image, source.boxes_at(f.index) if f.index % every == 0 else None)
            for f in source.frames()]


def mask_ious(reference: list, other: list, least: int = 20) -> list[float]:
    """Per object and frame, the IoU of two runs' masks (which must name the same objects)."""
    out = []
    for a, b in zip(reference, other, strict=True):
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        out += [float((m1 & m2).sum() / max(1, (m1 | m2).sum())) for m1, m2 in zip(a.mask, b.mask, strict=True)]
    assert len(out) >= least
    return out


@pytest.fixture(scope="module")
def eager_masks(tiny_models: TinyModels) -> list:
    return track(VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu")))


def test_compiled_sam2_parts_give_the_eager_masks(tiny_models: TinyModels) -> None:
    parts = ["image_encoder", "memory_attention", "mask_decoder", "memory_encoder"]
    model = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu", compile=parts))
    assert model.compiled == parts
    assert all(getattr(getattr(model.model, a), "streamvis_compiled", None) == "default" for a in
               ("vision_encoder", "memory_attention", "mask_decoder", "memory_encoder"))
    # 6 frames of 2 objects (a keyframe at 0 and 5): each part compiles for the shapes it meets, far fewer than
    # the 10 frames of 3 objects of the tolerance tests (their memory bank grows each frame)
    frames = {"frames": 6, "objects": 2}
    eager = track(VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu")), **frames)
    assert min(mask_ious(eager, track(model, **frames), least=12)) >= 0.999


@pytest.mark.parametrize("setting", list(TOLERANCES))
def test_setting_within_its_tolerance(tiny_models: TinyModels, eager_masks: list, setting: str) -> None:
    key, value = setting.split("=")
    model = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cpu", **{key: value}))
    if key == "preprocess":
        assert model.preprocess_on_device
    ious = mask_ious(eager_masks, track(model))
    least, mean = TOLERANCES[setting]
    assert min(ious) >= least and float(np.mean(ious)) >= mean, (min(ious), float(np.mean(ious)))


def test_florence2_compiled_decode_step_writes_the_eager_text(tiny_models: TinyModels) -> None:
    frames = [f.image for f in open_source("synthetic:?w=320&h=192&frames=3&objects=3&seed=4").frames()]

    def texts(**settings) -> list[str]:
        config = Florence2Config(model=str(tiny_models.florence), device="cpu", max_new_tokens=16, **settings)
        detector = Florence2Detector(Florence2Model(config), config)
        if "compile" in settings:
            assert detector.model.model.generation_config.cache_implementation == "static"
        return [detector.generate_text([image])[0] for image in frames]

    eager = texts()
    assert texts(compile=["decoder"]) == eager
    assert texts(attention="eager") == eager


def test_device_preprocessing_matches_the_host_on_real_frames(person_video) -> None:
    """One copy of the uint8 frame, resized on the device. Enlarging (SAM 2.1's 1024 from these 768x432 frames),
    within 0.05 everywhere (about 3 grey levels after normalisation) of OpenCV's resize. Shrinking, the device
    path antialiases as torchvision (and so transformers' SAM 2 processor) does and OpenCV's bilinear does not:
    they differ at sharp edges, within 0.01 on average."""
    with av.open(str(person_video)) as container:
        images = [f.to_ndarray(format="bgr24") for _, f in zip(range(3), container.decode(video=0), strict=False)]
    for image in images:
        for size, most, mean in ((1024, 0.05, 0.005), (512, None, 0.01)):
            host = preprocess_square(image, size)
            device = preprocess_square_on(image, size, "cpu", torch.float32).numpy()
            assert device.shape == host.shape == (3, size, size)
            diff = np.abs(device - host)
            assert float(diff.mean()) <= mean
            assert most is None or float(diff.max()) <= most


@pytest.mark.parametrize(("device", "cuda_graphs", "mode"), [
    ("cuda", True, "reduce-overhead"), ("cuda", False, "default"), ("cpu", False, "default"), ("cpu", True, "default")])
def test_cuda_graphs_only_on_cuda(device, cuda_graphs, mode, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert compile_mode(device, cuda_graphs) == mode
    assert ("need a CUDA device" in caplog.text) == (cuda_graphs and device != "cuda")


@pytest.mark.parametrize(("overrides", "message"), [
    (["segmenter.type=sam2", "segmenter.compile=[image_encoder]", "segmenter.backend=onnx"],
     r"image encoder runs on onnxruntime"),
    (["detector.type=florence2", "detector.compile=[decoder]", "detector.num_beams=3"], r"decodes greedily"),
    (["detector.type=florence2", "detector.compile=[vision_encoder]", "detector.backend=onnx"], r"there are none"),
    (["segmenter.type=sam2", "segmenter.compile=[everything]"], r"segmenter\.compile\.0: .*'image_encoder'"),
])
def test_fast_path_settings_are_checked(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_pipeline("detect", overrides)


def test_outputs_leave_the_cuda_graph_memory_as_copies() -> None:
    """With CUDA graphs a compiled part's outputs are copied (the next replay overwrites the graph's own)."""
    from transformers.modeling_outputs import BaseModelOutput

    from streamvis.runtime.torch_compile import _cloned

    tensor = torch.ones(2)
    out = _cloned((tensor, [tensor, 3], {"a": tensor}, BaseModelOutput(last_hidden_state=tensor), "text"))
    assert out[1][1] == 3 and out[4] == "text" and isinstance(out[3], BaseModelOutput)
    copies = [out[0], out[1][0], out[2]["a"], out[3].last_hidden_state]
    assert all(torch.equal(c, tensor) and c.data_ptr() != tensor.data_ptr() for c in copies)
