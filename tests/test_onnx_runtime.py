"""ONNX Runtime backend for the SAM 2.1 image encoder: export with a manifest, parity with torch (encoder outputs
within 1e-4, masks IoU >= 0.99 per object per frame), and `streamvis process` with backend torch vs onnx."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import TinyModels, cut_clip, run_cli

from streamvis.config import Florence2Config, Sam2Config
from streamvis.errors import ModelError
from streamvis.runtime.export import read_manifest
from streamvis.runtime.session import create_session
from streamvis.segmentation.sam2_onnx import ENCODER as SAM2_ENCODER
from streamvis.segmentation.sam2_onnx import encoder_module as sam2_encoder_module
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.serialize import rle_to_masks
from streamvis.sources import open_source


def test_manifest_and_encoder_parity(tiny_models: TinyModels, sam2_onnx: Path) -> None:
    from transformers import Sam2VideoModel

    manifest = read_manifest(sam2_onnx, SAM2_ENCODER, str(tiny_models.sam2))
    part = manifest["parts"][SAM2_ENCODER]
    assert manifest["opset"] == 18 and part["precision"] == "fp32" and part["image_size"] == 256
    assert part["file"] == "sam2_image_encoder.onnx"
    session, provider = create_session(sam2_onnx / part["file"], ["cpu"], "encoder")
    assert provider == "cpu" and [o.name for o in session.get_outputs()] == part["outputs"]
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    encoder = sam2_encoder_module(Sam2VideoModel.from_pretrained(tiny_models.sam2).eval())
    with torch.inference_mode():
        expected = encoder(pixels)
    got = session.run(None, {"pixel_values": pixels.numpy()})
    assert len(got) == len(expected) == 6
    for ours, reference in zip(got, expected, strict=True):
        assert ours.shape == tuple(reference.shape)
        assert float(np.abs(ours - reference.numpy()).max()) <= 1e-4


def test_manifest_checks(tiny_models: TinyModels, sam2_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="was exported from"):
        read_manifest(sam2_onnx, SAM2_ENCODER, "facebook/sam2.1-hiera-large")
    with pytest.raises(ModelError, match="holds no florence2"):
        read_manifest(sam2_onnx, "florence2_decoder")
    with pytest.raises(ModelError, match="not a streamvis ONNX export"):
        read_manifest(tmp_path, SAM2_ENCODER)


@pytest.mark.parametrize("parts", [None, ["memory_attention", "memory_encoder"]])
def test_segmenter_masks_match_torch(tiny_models: TinyModels, sam2_onnx: Path, parts: list[str] | None) -> None:
    """On the CPU provider the default runs the image encoder alone on onnxruntime; all three graphs when asked."""
    base = dict(type="sam2", model=str(tiny_models.sam2), device="cpu")
    torch_seg = VideoSegmenterModel(Sam2Config(**base)).new_stream()
    onnx_seg = VideoSegmenterModel(Sam2Config(**base, backend="onnx", onnx_dir=str(sam2_onnx),
                                                onnx_parts=parts)).new_stream()
    assert onnx_seg.provider.startswith("onnxruntime:cpu fp32")
    network = onnx_seg.model.model  # the transformers module the shared segmenter model holds
    standins = {type(network.memory_attention).__name__, type(network.memory_encoder).__name__}
    expected = {"OnnxMemoryAttention", "OnnxMemoryEncoder"} if parts else {"Sam2VideoMemoryAttention",
                                                                           "Sam2VideoMemoryEncoder"}
    assert standins == expected
    source = open_source("synthetic:?w=320&h=192&frames=24&objects=3&enter=10")
    for frame in source.frames():
        given = source.boxes_at(frame.index) if frame.index % 4 == 0 else None
        a, b = torch_seg.update(frame.image, given), onnx_seg.update(frame.image, given)
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        for m1, m2 in zip(a.mask, b.mask, strict=True):
            assert (m1 & m2).sum() / max(1, (m1 | m2).sum()) >= 0.99


def test_process_backend_torch_vs_onnx(tiny_models: TinyModels, person_video: Path, models_dir: Path,
                                       tmp_path: Path) -> None:
    """The same clip through `streamvis process`: first use exports into the cache; detections and masks agree."""
    clip = cut_clip(person_video, tmp_path / "clip.mp4", 80)
    env = {**tiny_models.offline_env, "STREAMVIS_CACHE_DIR": str(tmp_path / "cache")}
    rows = {}
    for backend in ("torch", "onnx"):
        events = tmp_path / f"{backend}.jsonl"
        result = run_cli("process", str(clip), "-o", str(tmp_path / f"{backend}.mp4"), "--events", str(events), "-q",
                         "--models-dir", str(models_dir), "--set", "detector.every_n_frames=5",
                         "--set", "segmenter.type=sam2", "--set", f"segmenter.model={tiny_models.SAM2}",
                         "--set", f"segmenter.backend={backend}", env=env)
        assert result.returncode == 0, result.stderr
        rows[backend] = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(list((tmp_path / "cache" / "onnx").glob("*/fp32/manifest.json"))) == 1  # exported on first use
    assert len(rows["torch"]) == len(rows["onnx"]) == 80
    compared = 0
    for a, b in zip(rows["torch"], rows["onnx"], strict=True):
        assert [d["track_id"] for d in a["detections"]] == [d["track_id"] for d in b["detections"]]
        for da, db in zip(a["detections"], b["detections"], strict=True):
            ma, mb = rle_to_masks([da["mask"]])[0], rle_to_masks([db["mask"]])[0]
            assert (ma & mb).sum() / max(1, (ma | mb).sum()) >= 0.99
            compared += 1
    assert compared >= 20  # masks were compared (the person walks in at about frame 60)


def test_export_command_refuses_other_models(tiny_models: TinyModels, tmp_path: Path) -> None:
    """(A successful `streamvis export` is test_onnx_parts' test of its precision flags.)"""
    bad = run_cli("export", tiny_models.SAM, "--output", str(tmp_path / "f"), env=tiny_models.offline_env)
    assert bad.returncode == 2 and "supports SAM 2.1" in bad.stderr and "'sam'" in bad.stderr


def test_florence2_onnx_greedy_tokens_identical_to_torch(tiny_models: TinyModels, person_video: Path,
                                                         tmp_path: Path, monkeypatch) -> None:
    """Florence-2 over onnxruntime (three graphs, KV cache) writes exactly the tokens `generate` writes."""
    import av

    from streamvis.detection import load_detector
    from streamvis.detection.florence2_onnx import PARTS

    monkeypatch.setenv("STREAMVIS_CACHE_DIR", str(tmp_path / "cache"))
    with av.open(str(person_video)) as container:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i % 40 == 0][:3]
    for task, prompt in (("<OD>", ""), ("<CAPTION_TO_PHRASE_GROUNDING>", "a person. a door")):
        base = dict(type="florence2", model=str(tiny_models.florence), task=task, prompt=prompt,
                    max_new_tokens=20, device="cpu")
        reference = load_detector(Florence2Config(**base))
        accelerated = load_detector(Florence2Config(**base, backend="onnx"))  # exported on first use
        assert accelerated.provider == "onnxruntime:cpu"
        assert reference.generate_text(frames) == accelerated.generate_text(frames)
    manifest = json.loads(next((tmp_path / "cache" / "onnx").glob("*/fp32/manifest.json")).read_text())
    assert set(PARTS) <= set(manifest["parts"])


def test_florence2_int8_export_runs_the_same_loop(tiny_models: TinyModels, person_video: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    """`precision: int8` exports the four graphs with int8 weight matmuls into the cache's int8 folder and
    decodes with them (int8 may change tokens, so this checks the graphs and the loop, not token equality)."""
    import av
    import onnx

    from streamvis.detection import load_detector
    from streamvis.detection.florence2_onnx import PARTS

    monkeypatch.setenv("STREAMVIS_CACHE_DIR", str(tmp_path / "cache"))
    with av.open(str(person_video)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    detector = load_detector(Florence2Config(model=str(tiny_models.florence), device="cpu", max_new_tokens=12,
                                             backend="onnx", precision="int8"))
    assert detector.provider == "onnxruntime:cpu int8"
    folder = next((tmp_path / "cache" / "onnx").glob("*/int8"))
    manifest = read_manifest(folder, PARTS[0], str(tiny_models.florence), "int8")
    for part in PARTS:
        graph = onnx.load(str(folder / manifest["parts"][part]["file"]), load_external_data=False).graph
        assert any(node.op_type == "MatMulInteger" for node in graph.node), part
    (text,) = detector.generate_text([frame])
    assert isinstance(text, str)
    detections = detector.detect(frame)
    assert len(detections) == len(detections.data.get("class_name", []))


def test_serve_reports_the_onnx_runtime_in_use(tiny_models: TinyModels, sam2_onnx_cache: dict[str, str],
                                               person_video: Path, models_dir: Path) -> None:
    """A live stream with the SAM 2.1 onnx backend: /streams and /metrics name onnxruntime and its provider (the
    cache already holds the export; exporting on first use is test_process_backend_torch_vs_onnx's)."""
    from test_serve import STREAM, Server

    server = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop",
                    "--set", "segmenter.type=sam2", "--set", f"segmenter.model={tiny_models.sam2}",
                    "--set", "segmenter.backend=onnx", env=sam2_onnx_cache)
    try:
        server.wait_ready(timeout=180)
        runtime = "onnxruntime:cpu fp32 + torch:cpu:float32"
        status, text = server.get("/streams")
        assert status == 200 and json.loads(text)["streams"][0]["stats"]["providers"]["segmenter"] == runtime
        status, text = server.get("/metrics")
        assert f'streamvis_model_info{{stream="{STREAM}",model="segmenter",provider="{runtime}"}} 1' in text
    finally:
        server.stop()
