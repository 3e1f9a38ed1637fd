"""The CUDA and TensorRT providers, where a GPU and onnxruntime-gpu are present (skipped otherwise): parity with
torch on the GPU, IO binding that leaves tensors on the device, and the TensorRT engine cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyModels

from streamvis.runtime.export import read_manifest
from streamvis.runtime.session import OrtRunner, import_onnxruntime
from streamvis.segmentation.sam2_onnx import ENCODER, MEMORY_ENCODER, encoder_module, export_sam2

PROVIDERS = import_onnxruntime().get_available_providers()
GPU = torch.cuda.is_available() and "CUDAExecutionProvider" in PROVIDERS
pytestmark = pytest.mark.skipif(
    not GPU,
    reason="needs an NVIDIA GPU, a CUDA build of torch and onnxruntime-gpu (pip install 'streamvis[gpu]')")


@pytest.fixture(scope="module")
def exported(tiny_models: TinyModels, tmp_path_factory) -> Path:
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(tiny_models.sam2).eval()
    return export_sam2(model, str(tiny_models.sam2), tmp_path_factory.mktemp("gpu") / "sam2")


def _file(folder: Path, part: str) -> Path:
    return folder / read_manifest(folder, part)["parts"][part]["file"]


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


@pytest.mark.skipif(GPU and "TensorrtExecutionProvider" not in PROVIDERS,
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
