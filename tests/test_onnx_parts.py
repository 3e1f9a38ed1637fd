"""The SAM 2.1 graphs beyond the image encoder (box decoder, memory attention, memory encoder), precisions
(int8 within its stated tolerance, fp16), IO binding, and the export command's precision flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import TinyModels, run_cli

from streamvis.config import Florence2Config, Sam2Config
from streamvis.errors import ModelError
from streamvis.runtime.export import read_manifest
from streamvis.runtime.precision import (
    INT8_MAX_RELATIVE,
    INT8_MIN_COSINE,
    INT8_MIN_MASK_IOU,
    cpu_int8_class,
    weight_matmuls,
)
from streamvis.runtime.session import OrtRunner, create_session
from streamvis.segmentation.sam2_onnx import (
    BOX_DECODER,
    ENCODER,
    MEMORY_ATTENTION,
    MEMORY_ENCODER,
    PARTS,
    box_decoder_module,
    encoder_module,
    export_sam2,
    memory_attention_module,
)
from streamvis.segmentation.video import VideoSegmenterModel
from streamvis.sources import open_source


@pytest.fixture(scope="module")
def sam2_model(tiny_models: TinyModels):
    from transformers import Sam2VideoModel

    torch.set_grad_enabled(False)
    return Sam2VideoModel.from_pretrained(tiny_models.sam2).eval()


@pytest.fixture(scope="module")
def exports(tiny_models: TinyModels, sam2_model, sam2_onnx: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("precisions")
    # lowered from the shared fp32 graphs (exporting from the model is the sam2_onnx fixture's)
    folders = {precision: export_sam2(sam2_model, str(tiny_models.sam2), root / precision, precision,
                                      fp32_from=sam2_onnx) for precision in ("int8", "fp16")}
    folders["fp32"] = sam2_onnx
    # what a CPU without VNNI gets (7-bit weights): computed exactly on every x86-64 CPU, so measurable anywhere
    folders["int8-reduced"] = export_sam2(sam2_model, str(tiny_models.sam2), root / "int8-reduced", "int8",
                                          int8_range="reduced", fp32_from=sam2_onnx)
    return folders


def _session(folder: Path, part: str):
    manifest = read_manifest(folder, part)
    return create_session(folder / manifest["parts"][part]["file"], ["cpu"], part)[0]


def _max_diff(got: list[np.ndarray], expected: tuple[torch.Tensor, ...]) -> float:
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))


def test_manifest_lists_every_part_with_names(exports: dict[str, Path], tiny_models: TinyModels) -> None:
    manifest = json.loads((exports["fp32"] / "manifest.json").read_text())
    assert manifest["model_id"] == str(tiny_models.sam2) and manifest["opset"] == 18
    assert set(manifest["parts"]) == set(PARTS)
    for part in PARTS:
        entry = manifest["parts"][part]
        session = _session(exports["fp32"], part)
        assert entry["precision"] == "fp32"
        assert [i.name for i in session.get_inputs()] == entry["inputs"]
        assert [o.name for o in session.get_outputs()] == entry["outputs"]


@pytest.mark.parametrize("boxes", [1, 3, 7])
def test_box_decoder_parity_for_any_number_of_boxes(exports: dict[str, Path], sam2_model, boxes: int) -> None:
    """Prompt encoder + mask decoder, one graph, the number of boxes dynamic: mask logits within 1e-4."""
    generator = torch.Generator().manual_seed(boxes)
    features = encoder_module(sam2_model)(torch.randn(1, 3, 256, 256, generator=generator))[:3]
    corner = torch.rand(1, boxes, 2, generator=generator) * 128
    box = torch.cat([corner, corner + 16 + torch.rand(1, boxes, 2, generator=generator) * 100], dim=-1)
    expected = box_decoder_module(sam2_model)(*features, box)
    got = _session(exports["fp32"], BOX_DECODER).run(None, {
        "vision_feats_0": features[0].numpy(), "vision_feats_1": features[1].numpy(),
        "vision_feats_2": features[2].numpy(), "boxes": box.numpy()})
    assert got[0].shape[0] == boxes
    assert _max_diff(got, expected) <= 1e-4


def test_box_decoder_matches_the_video_model_on_a_prompted_frame(sam2_model) -> None:
    """The box decoder's masks are the ones the video model predicts when a box first prompts an object."""
    from transformers import Sam2VideoInferenceSession

    from streamvis.segmentation.session import add_box_prompts

    pixels = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(3))
    box = np.array([[40, 30, 200, 180]], np.float32)
    session = Sam2VideoInferenceSession(inference_device="cpu", inference_state_device="cpu",
                                        video_storage_device="cpu", dtype=torch.float32)
    session.video_height = session.video_width = 256
    add_box_prompts(session, 0, [1], box)
    video = sam2_model(inference_session=session, frame_idx=0, frame=pixels).pred_masks
    features = encoder_module(sam2_model)(pixels[None])[:3]
    ours = box_decoder_module(sam2_model)(*features, torch.from_numpy(box)[None])[0]
    assert float((ours.reshape(video.shape) - video).abs().max()) <= 1e-4


@pytest.mark.parametrize(("frames", "pointers"), [(1, 0), (2, 3), (6, 16)])
def test_memory_attention_parity(exports: dict[str, Path], sam2_model, frames: int, pointers: int) -> None:
    """Any number of memory frames and object pointers (both dynamic in the graph)."""
    generator = torch.Generator().manual_seed(frames)
    tokens = 16 * 16
    shapes = [(tokens, 1, 128), (tokens, 1, 128), (frames * tokens, 1, 64), (frames * tokens, 1, 64),
              (pointers, 1, 64), (pointers, 1, 64)]
    inputs = [torch.randn(*shape, generator=generator) for shape in shapes]
    expected = (memory_attention_module(sam2_model)(*inputs),)
    names = ["current", "current_pos", "spatial", "spatial_pos", "pointers", "pointers_pos"]
    feeds = {name: tensor.numpy() for name, tensor in zip(names, inputs, strict=True)}
    got = _session(exports["fp32"], MEMORY_ATTENTION).run(None, feeds)
    assert _max_diff(got, expected) <= 1e-4


@pytest.mark.parametrize("objects", [1, 4])
def test_memory_encoder_parity(exports: dict[str, Path], sam2_model, objects: int) -> None:
    generator = torch.Generator().manual_seed(objects)
    features = torch.randn(objects, 128, 16, 16, generator=generator)
    masks = torch.randn(objects, 1, 256, 256, generator=generator)
    expected = sam2_model.memory_encoder(features, masks)
    got = _session(exports["fp32"], MEMORY_ENCODER).run(None, {"vision_features": features.numpy(),
                                                                "masks": masks.numpy()})
    assert _max_diff(got, expected) <= 1e-4


INT8_EXPORTS = ["int8", "int8-reduced"]  # this CPU's choice, and the one for CPUs without VNNI


def _int8_weights(folder: Path, part: str) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    entry = read_manifest(folder, part, precision="int8")["parts"][part]
    model = onnx.load(str(folder / entry["file"]))
    return [numpy_helper.to_array(init) for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]


def test_int8_range_follows_the_cpu_and_is_recorded(exports: dict[str, Path]) -> None:
    reduced = cpu_int8_class() == "avx2"
    for folder, expected in ((exports["int8"], reduced), (exports["int8-reduced"], True)):
        for part in PARTS:
            entry = read_manifest(folder, part)["parts"][part]
            if entry["precision"] == "int8":
                assert entry["int8_reduce_range"] is expected


def test_reduced_range_int8_cannot_saturate_avx2_pairs(exports: dict[str, Path]) -> None:
    """vpmaddubsw adds two u8 x s8 products in 16 bits: with |w| <= 64, 2 * 255 * 64 = 32640 < 2**15."""
    weights = _int8_weights(exports["int8-reduced"], ENCODER)
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    full = _int8_weights(exports["int8"], ENCODER)
    if cpu_int8_class() == "vnni":  # a full-range export does use the range: the check above can fail
        assert max(int(np.abs(w.astype(np.int32)).max()) for w in full) > 64


@pytest.mark.parametrize("export", INT8_EXPORTS)
def test_int8_encoder_within_stated_tolerance(exports: dict[str, Path], sam2_model, export: str) -> None:
    import onnx

    folder = exports[export]
    part = read_manifest(folder, ENCODER, precision="int8")["parts"][ENCODER]
    graph = onnx.load(str(folder / part["file"]), load_external_data=False).graph
    assert any(node.op_type == "MatMulInteger" for node in graph.node)
    assert weight_matmuls(onnx.load(str(folder / part["file"]), load_external_data=False))[0] == []  # all int8
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    expected = encoder_module(sam2_model)(pixels)
    got = _session(folder, ENCODER).run(None, {"pixel_values": pixels.numpy()})
    for ours, reference in zip(got, expected, strict=True):
        reference = reference.numpy()
        cosine = float((ours * reference).sum() / (np.linalg.norm(ours) * np.linalg.norm(reference)))
        assert cosine >= INT8_MIN_COSINE
        assert float(np.abs(ours - reference).max()) <= INT8_MAX_RELATIVE * float(np.abs(reference).max())


@pytest.mark.parametrize(("export", "least_iou"),
                         [("int8", INT8_MIN_MASK_IOU), ("int8-reduced", INT8_MIN_MASK_IOU), ("fp16", 0.99)])
def test_tracked_masks_in_lower_precision(exports: dict[str, Path], tiny_models: TinyModels, export: str,
                                          least_iou: float) -> None:
    """A tracked clip with int8 / fp16 graphs: the same objects, masks overlapping fp32's (stated tolerance)."""
    precision = export.split("-")[0]
    base = dict(type="sam2", model=str(tiny_models.sam2), device="cpu", backend="onnx",
                onnx_parts=["memory_attention", "memory_encoder"])
    reference = VideoSegmenterModel(Sam2Config(**base, onnx_dir=str(exports["fp32"]))).new_stream()
    lowered = VideoSegmenterModel(Sam2Config(**base, precision=precision,
                                            onnx_dir=str(exports[export]))).new_stream()
    assert lowered.provider.startswith(f"onnxruntime:cpu {precision}")
    source = open_source("synthetic:?w=320&h=192&frames=20&objects=3&enter=8")
    compared = 0
    for frame in source.frames():
        given = source.boxes_at(frame.index) if frame.index % 4 == 0 else None
        a, b = reference.update(frame.image, given), lowered.update(frame.image, given)
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        for m1, m2 in zip(a.mask, b.mask, strict=True):
            assert (m1 & m2).sum() / max(1, (m1 | m2).sum()) >= least_iou
            compared += 1
    assert compared >= 40


def test_precision_is_checked_on_load(exports: dict[str, Path], tiny_models: TinyModels) -> None:
    with pytest.raises(ModelError, match=r"holds a fp32 .* not int8: export again with --int8"):
        read_manifest(exports["fp32"], ENCODER, precision="int8")
    with pytest.raises(ModelError, match="not fp32: export again without"):
        read_manifest(exports["int8"], ENCODER, precision="fp32")
    config = Sam2Config(model=str(tiny_models.sam2), device="cpu", backend="onnx",
                             precision="int8", onnx_dir=str(exports["fp32"]))
    with pytest.raises(ModelError, match="export again with --int8"):
        VideoSegmenterModel(config)


def test_stream_parts_per_provider() -> None:
    from streamvis.segmentation.sam2_onnx import stream_parts

    assert stream_parts(None, "cpu") == [ENCODER]
    assert stream_parts(None, "tensorrt") == stream_parts(None, "cuda") == [ENCODER, MEMORY_ATTENTION, MEMORY_ENCODER]
    assert stream_parts(["memory_encoder"], "cpu") == [ENCODER, MEMORY_ENCODER]
    assert stream_parts(["image_encoder"], "cuda") == [ENCODER]


def test_precision_needs_the_onnx_backend() -> None:
    with pytest.raises(ValueError, match=r"segmenter\.precision: int8 needs segmenter\.backend: onnx"):
        Sam2Config(precision="int8")
    with pytest.raises(ValueError, match=r"detector\.precision: fp16 needs detector\.backend: onnx"):
        Florence2Config(precision="fp16")


def test_io_binding_runner_takes_numpy_torch_and_ortvalues(exports: dict[str, Path]) -> None:
    """The runner binds inputs where they are and returns outputs as OrtValues or torch tensors (DLPack)."""
    import onnxruntime as ort

    folder = exports["fp32"]
    path = folder / read_manifest(folder, MEMORY_ENCODER)["parts"][MEMORY_ENCODER]["file"]
    runner = OrtRunner(path, ["tensorrt", "cuda", "cpu"], "memory encoder")
    assert runner.provider == "cpu" and runner.device == "cpu"
    features = torch.randn(2, 128, 16, 16)
    masks = torch.randn(2, 1, 256, 256)
    expected = runner.session.run(None, {"vision_features": features.numpy(), "masks": masks.numpy()})
    as_torch = runner.run_torch({"vision_features": features, "masks": masks})
    as_values = runner.run({"vision_features": features.numpy(),
                            "masks": ort.OrtValue.ortvalue_from_numpy(masks.numpy())})
    strided = runner.run_torch({"vision_features": features.permute(0, 1, 3, 2).transpose(2, 3), "masks": masks})
    for got in (as_torch, [v.numpy() for v in as_values], strided):
        for ours, reference in zip(got, expected, strict=True):
            assert np.array_equal(np.asarray(ours), reference)


def test_a_lower_precision_starts_from_the_fp32_graphs_already_exported(tiny_models: TinyModels, sam2_model,
                                                                         sam2_onnx: Path, tmp_path: Path,
                                                                         monkeypatch, caplog) -> None:
    import streamvis.runtime.export as export

    def no_export(*args, **kwargs) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "export_graph", no_export)
    with caplog.at_level("INFO", logger="streamvis.runtime.export"):
        folder = export_sam2(sam2_model, str(tiny_models.sam2), tmp_path / "fp16", "fp16", fp32_from=sam2_onnx)
    assert caplog.text.count("the fp32 graph of") == 4
    manifest = read_manifest(folder, ENCODER, str(tiny_models.sam2), "fp16")
    assert {part["precision"] for part in manifest["parts"].values()} == {"fp16"}
    assert not list(folder.glob(f"{ENCODER}.onnx"))  # only the fp16 copies stay
    with pytest.raises(AssertionError, match="exported again"):  # another model's graphs are not taken
        export_sam2(sam2_model, "another/model", tmp_path / "other", "fp16", fp32_from=sam2_onnx)


def test_export_command_precision_flags(tiny_models: TinyModels, sam2_onnx_cache: dict[str, str],
                                       tmp_path: Path) -> None:
    # the cache holds the model's fp32 graphs: `export --int8` lowers them (exporting is the sam2_onnx fixture's)
    out = tmp_path / "int8"
    result = run_cli("export", str(tiny_models.sam2), "--int8", "--output", str(out), env=sam2_onnx_cache)
    assert result.returncode == 0, result.stderr
    assert "segmenter.precision=int8" in result.stderr
    manifest = read_manifest(out, MEMORY_ATTENTION, str(tiny_models.sam2), "int8")
    for name, part in manifest["parts"].items():
        precision = "fp32" if name == BOX_DECODER else "int8"  # the box decoder stays fp32 (docs/guides/gpu-onnx.md)
        assert part["precision"] == precision and part["file"].endswith(f"{name}{'.int8' * (precision == 'int8')}.onnx")
    assert not list(out.glob(f"{ENCODER}.onnx"))  # the fp32 intermediate is gone
    both = run_cli("export", tiny_models.SAM2, "--int8", "--fp16", env=tiny_models.offline_env)
    assert both.returncode == 2 and "choose one of --fp16 and --int8" in both.stderr
    bad_range = run_cli("export", tiny_models.SAM2, "--int8", "--int8-range", "half", env=tiny_models.offline_env)
    assert bad_range.returncode == 2 and "--int8-range must be auto, full or reduced" in bad_range.stderr


def test_export_of_a_registry_detector_says_it_is_onnx_already() -> None:
    result = run_cli("export", "yolox-nano")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: yolox-nano is an ONNX model already: export --int8 --calibrate "
                                     "IMAGES_OR_VIDEO makes its int8 copy; other exports take SAM 2.1 and Florence-2 "
                                     "hub ids or folders")
    assert "hf download" not in result.stderr


def test_engine_build_progress_is_announced_only_when_building(caplog, tmp_path: Path) -> None:
    """TensorRT gives no fraction done: the build is announced, then its duration; a cached engine is silent."""
    import logging

    from streamvis.runtime.session import engine_build, engine_cached

    caplog.set_level(logging.INFO, logger="streamvis")
    with engine_build("encoder", active=False):
        pass
    assert not caplog.records
    with engine_build("encoder", active=True):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("encoder: building the TensorRT engine")
    assert messages[1].startswith("encoder: TensorRT engine ready in")
    assert not engine_cached(tmp_path)
    (tmp_path / "TensorrtExecutionProvider_TRTKernel_graph_main_123.engine").write_bytes(b"x")
    assert engine_cached(tmp_path)


@pytest.mark.parametrize(("shape", "perm", "expected"), [
    ([1, 2304, 1, 16, 32], [0, 2, 3, 1, 4], ([2304, 16, 32], [1, 0, 2])),  # heads first: a 3-D transpose
    ([2, 3, 4, 5], [0, 2, 3, 1], ([2, 3, 20], [0, 2, 1])),  # axes 2 and 3 stay neighbours: merged
    ([4, 1, 5], [1, 0, 2], ([20], [0])),  # only a size-1 axis moves: a reshape
    ([2, 3, 4], [2, 0, 1], ([6, 4], [1, 0])),  # the last axis to the front: a 2-D transpose
    ([2, 3, 4], [0, 2, 1], None),  # already minimal
])
def test_reduced_transpose(shape: list[int], perm: list[int], expected) -> None:
    from streamvis.runtime.optimize import reduced_transpose

    assert reduced_transpose(shape, perm) == expected


def test_simplify_transposes_is_exact(tmp_path: Path) -> None:
    """A graph of reducible and irreducible transposes gives bit-identical outputs after the rewrite."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 3, 1, 4]),
             helper.make_node("Transpose", ["a"], ["b"], perm=[2, 0, 1, 3, 4]),
             helper.make_node("Transpose", ["b"], ["y"], perm=[1, 0, 2, 3, 4])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 1, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "t.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    x = np.random.default_rng(0).standard_normal((1, 6, 1, 4, 5)).astype(np.float32)
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    from streamvis.runtime.optimize import simplify_transposes

    assert simplify_transposes(path) == 3
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert after.shape == before.shape == (1, 4, 1, 6, 5) and np.array_equal(after, before)
    kinds = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert kinds.count("Transpose") < 3 and "Reshape" in kinds


def test_damaged_export_is_a_clear_error(exports: dict[str, Path], tiny_models: TinyModels, tmp_path: Path) -> None:
    """A truncated graph file (a disk filled up mid-export) names the file and how to recover."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(exports["fp32"], damaged)
    for fused in damaged.glob("*.fused.onnx*"):  # made by earlier runs on CPU
        fused.unlink()
    graph = damaged / read_manifest(damaged, MEMORY_ENCODER)["parts"][MEMORY_ENCODER]["file"]
    graph.write_bytes(graph.read_bytes()[:1000])
    config = Sam2Config(model=str(tiny_models.sam2), device="cpu", backend="onnx",
                             onnx_dir=str(damaged), onnx_parts=["memory_encoder"])
    with pytest.raises(ModelError, match=r"cannot load .*sam2_memory_encoder\.onnx.*damaged export: delete"):
        VideoSegmenterModel(config)


def test_runner_uses_the_fused_variant_off_tensorrt(exports: dict[str, Path], sam2_model, tmp_path: Path) -> None:
    """On CPU the runner makes (once) and runs the graph with onnxruntime's fused operators: same outputs."""
    import shutil

    import onnx

    folder = tmp_path / "copy"
    shutil.copytree(exports["fp32"], folder)
    path = folder / read_manifest(folder, ENCODER)["parts"][ENCODER]["file"]
    runner = OrtRunner(path, ["cpu"], "encoder")
    fused = path.with_name(f"{path.stem}.fused.onnx")
    assert fused.is_file()
    assert "Gelu" in {node.op_type for node in onnx.load(str(fused), load_external_data=False).graph.node}
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    expected = encoder_module(sam2_model)(pixels)
    got = [t.numpy() for t in runner.run_torch({"pixel_values": pixels})]
    assert _max_diff(got, expected) <= 1e-4
    made = fused.stat().st_mtime_ns
    OrtRunner(path, ["cpu"], "encoder")
    assert fused.stat().st_mtime_ns == made  # made once


def test_fused_variant_is_remade_after_a_new_export(exports: dict[str, Path], tmp_path: Path) -> None:
    import os
    import shutil

    from streamvis.runtime.optimize import fused_variant

    folder = tmp_path / "copy"
    shutil.copytree(exports["fp32"], folder)
    path = folder / read_manifest(folder, MEMORY_ENCODER)["parts"][MEMORY_ENCODER]["file"]
    first = fused_variant(path)
    made = first.stat().st_mtime_ns
    assert fused_variant(path).stat().st_mtime_ns == made
    os.utime(path, ns=(made + 10**9, made + 10**9))  # the plain graph exported again, later
    assert fused_variant(path).stat().st_mtime_ns > made
