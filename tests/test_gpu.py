"""On an NVIDIA GPU (skipped elsewhere): the torch fast path on CUDA against eager fp32 (batched propagation, compiled
parts with CUDA graphs, Florence-2's compiled decode step, half precisions, pre-processing on the device, encoder
batches across streams), and, with onnxruntime-gpu, the CUDA and TensorRT providers (parity with torch, IO binding
that leaves tensors on the device, the TensorRT engine cache). `benchmarks/gpu/check.py` runs this file first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import TinyModels
from test_fast_path import mask_ious, track

from streamvis.config import Florence2Config, Sam2Config
from streamvis.runtime.export import read_manifest
from streamvis.runtime.session import OrtRunner, import_onnxruntime
from streamvis.segmentation.processing import preprocess_square, preprocess_square_on
from streamvis.segmentation.sam2_onnx import ENCODER, MEMORY_ENCODER, encoder_module, export_sam2
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.sources import open_source

CUDA = torch.cuda.is_available()
PROVIDERS = import_onnxruntime().get_available_providers()
ORT_GPU = CUDA and "CUDAExecutionProvider" in PROVIDERS
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU and a CUDA build of torch")
needs_ort_gpu = pytest.mark.skipif(
    not ORT_GPU, reason="needs an NVIDIA GPU, a CUDA build of torch and onnxruntime-gpu (pip install 'streamvis[gpu]')")


def cuda_track(model: VideoSegmenterModel) -> list:
    """The clip every CUDA setting is tracked on: 640x360, 4 objects, a keyframe every 6 frames."""
    return track(model, frames=12, size="w=640&h=360", objects=4, every=6)


@pytest.fixture(scope="module")
def cuda_reference(tiny_models: TinyModels) -> list:
    """Eager fp32 on CUDA, objects one at a time: what every setting is held to."""
    return cuda_track(VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cuda", dtype="float32",
                                                     batch_objects=False, preprocess="host")))


@needs_cuda
@pytest.mark.parametrize(("settings", "least", "mean"), [
    ({"batch_objects": True}, 0.999, 0.9999),
    ({"preprocess": "device"}, 0.95, 0.99),
    ({"dtype": "bfloat16"}, 0.85, 0.95),
    ({"dtype": "float16"}, 0.9, 0.97),
    ({"compile": ["image_encoder", "memory_attention", "mask_decoder", "memory_encoder"], "cuda_graphs": True},
     0.99, 0.999),
], ids=["batched", "device-preprocess", "bf16", "fp16", "compiled-cuda-graphs"])
def test_cuda_setting_against_eager(tiny_models: TinyModels, cuda_reference: list, settings: dict, least: float,
                                    mean: float) -> None:
    base = {"model": str(tiny_models.sam2), "device": "cuda", "dtype": "float32", "preprocess": "host"}
    model = VideoSegmenterModel(Sam2Config(**{**base, **settings}))
    ious = mask_ious(cuda_reference, cuda_track(model), least=1)
    assert min(ious) >= least and float(np.mean(ious)) >= mean, (min(ious), float(np.mean(ious)))


@needs_cuda
def test_cuda_encoder_batches_across_streams(tiny_models: TinyModels) -> None:
    model = VideoSegmenterModel(Sam2Config(model=str(tiny_models.sam2), device="cuda", dtype="float32"))
    frames = [f.image for f in open_source("synthetic:?w=640&h=360&frames=4&objects=3&seed=2").frames()]
    pixels = [model.pixels(image) for image in frames]
    assert all(p.is_cuda for p in pixels)
    batched = model.encode_frames(pixels)
    for one, got in zip(pixels, batched, strict=True):
        (alone,) = model.encode_frames([one])
        for a, b in zip(alone["vision_feats"], got["vision_feats"], strict=True):
            assert float((a - b).abs().max()) <= 1e-3  # TF32 and batched kernels


@needs_cuda
def test_cuda_device_preprocessing_is_the_cpu_one() -> None:
    image = next(iter(open_source("synthetic:?w=1280&h=720&frames=1&objects=4&seed=1").frames())).image
    on_gpu = preprocess_square_on(image, 1024, "cuda", torch.float32)
    assert on_gpu.is_cuda
    assert float((on_gpu.cpu() - preprocess_square_on(image, 1024, "cpu", torch.float32)).abs().max()) <= 0.02
    assert float(np.abs(on_gpu.cpu().numpy() - preprocess_square(image, 1024)).mean()) <= 0.005


@needs_cuda
def test_cuda_florence2_compiled_decode_step(tiny_models: TinyModels) -> None:
    from streamvis.detection.florence2 import Florence2Detector, Florence2Model

    frames = [f.image for f in open_source("synthetic:?w=320&h=192&frames=3&objects=3&seed=4").frames()]

    def texts(**settings) -> list[str]:
        config = Florence2Config(model=str(tiny_models.florence), device="cuda", dtype="float32",
                                 max_new_tokens=16, **settings)
        detector = Florence2Detector(Florence2Model(config), config)
        return [detector.generate_text([image])[0] for image in frames for _ in range(2)]

    assert texts(compile=["decoder"], cuda_graphs=True) == texts()


# -- onnxruntime-gpu ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tiny_models: TinyModels, tmp_path_factory) -> Path:
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(tiny_models.sam2).eval()
    return export_sam2(model, str(tiny_models.sam2), tmp_path_factory.mktemp("gpu") / "sam2")


def _file(folder: Path, part: str) -> Path:
    return folder / read_manifest(folder, part)["parts"][part]["file"]


@needs_ort_gpu
def test_cuda_encoder_parity_and_outputs_stay_on_the_gpu(exported: Path, tiny_models: TinyModels) -> None:
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(tiny_models.sam2).eval().cuda()
    pixels = torch.randn(1, 3, 256, 256, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.inference_mode():
        expected = encoder_module(model)(pixels)
    runner = OrtRunner(_file(exported, ENCODER), ["cuda", "cpu"], "encoder")
    assert runner.provider == "cuda" and runner.device == "cuda"
    got = runner.run_torch({"pixel_values": pixels})  # bound in place, no host copy
    for ours, reference in zip(got, expected, strict=True):
        assert ours.is_cuda
        assert float((ours - reference).abs().max()) <= 1e-3  # cuDNN/TF32 kernels differ from torch's


@needs_ort_gpu
@pytest.mark.skipif(ORT_GPU and "TensorrtExecutionProvider" not in PROVIDERS,
                    reason="this onnxruntime-gpu build has no TensorRT provider")
def test_tensorrt_builds_then_reuses_its_engine(exported: Path) -> None:
    path = _file(exported, MEMORY_ENCODER)
    features = torch.randn(2, 128, 16, 16, device="cuda")
    masks = torch.randn(2, 1, 256, 256, device="cuda")
    first = OrtRunner(path, ["tensorrt", "cuda", "cpu"], "memory encoder")
    assert first.provider == "tensorrt"
    reference = [t.cpu().numpy() for t in first.run_torch({"vision_features": features, "masks": masks})]
    assert list((path.parent / "tensorrt-cache").glob("*.engine"))
    again = OrtRunner(path, ["tensorrt", "cuda", "cpu"], "memory encoder")
    assert not again.builds_engine  # the cached engine is used; no build announced
    got = [t.cpu().numpy() for t in again.run_torch({"vision_features": features, "masks": masks})]
    for ours, theirs in zip(got, reference, strict=True):
        assert np.allclose(ours, theirs, atol=1e-2)  # fp16 engines
