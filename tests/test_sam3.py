"""SAM 3 in a stream, with a tiny random SAM 3 loaded as a user's checkpoint is (a folder, or a hub id through
`streamvis process`): concepts found on every frame with stable ids, a concept added mid-stream joining with new
ids, memory flat however long the stream, pruning that changes no mask, no detector run, words from viewers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import TinyModels, run_cli

from streamvis.config import PipelineConfig, Sam3Config
from streamvis.pipeline.loading import Models
from streamvis.pipeline.step import Pipeline
from streamvis.prompts import Prompt, PromptError
from streamvis.segmentation import sam3 as sam3_module
from streamvis.segmentation.processing import preprocess_square
from streamvis.segmentation.sam3 import Sam3SegmenterModel, preprocess_sam3
from streamvis.segmentation.session import session_nbytes
from streamvis.sources import open_source
from streamvis.testing.fakes import StandInDetector


@pytest.fixture(scope="module")
def sam3(tiny_models: TinyModels) -> Sam3SegmenterModel:
    return Sam3SegmenterModel(Sam3Config(model=str(tiny_models.sam3), device="cpu", prompt="person"))


def _frames(count: int, seed: int = 1):
    return list(open_source(f"synthetic:?w=160&h=96&frames={count}&objects=2&seed={seed}").frames())


def test_pre_processing_is_sam3s_own() -> None:
    image = _frames(1)[0].image
    ours = preprocess_sam3(image, 112)
    # the same resize as SAM 2's, then mean and std 0.5 instead of ImageNet's
    sam2 = preprocess_square(image, 112) * np.array([0.229, 0.224, 0.225], np.float32)[:, None, None] \
        + np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    np.testing.assert_allclose(ours, (sam2 - 0.5) / 0.5, atol=1e-5)
    assert ours.min() >= -1 and ours.max() <= 1


def test_instances_keep_their_ids_and_a_new_concept_joins(sam3: Sam3SegmenterModel) -> None:
    stream = sam3.new_stream()
    ids_by_frame, names_by_frame = [], []
    for frame in _frames(24):
        if frame.index == 12:
            assert stream.add_concept("car. person") == []  # person is there already
        out = stream.update(frame.image)
        assert out.mask is not None and out.mask.shape[1:] == (96, 160)
        ids_by_frame.append(out.tracker_id.tolist())
        names_by_frame.append(out.data["class_name"].tolist())
    before = ids_by_frame[11]
    assert before and all(ids == before for ids in ids_by_frame[3:12])  # stable ids while nothing changes
    after = ids_by_frame[-1]
    assert set(before) < set(after)  # the first concept's instances keep their ids; the new one's join
    new = [name for i, name in zip(after, names_by_frame[-1], strict=True) if i not in before]
    assert new and set(new) == {"car"} and stream.concepts == ["person", "car"]


def test_memory_stays_flat_and_pruning_changes_no_mask(sam3: Sam3SegmenterModel, monkeypatch) -> None:
    pruned, unpruned = sam3.new_stream(), sam3.new_stream()
    sizes = []
    frames = _frames(60)
    real_prune = sam3_module.prune_sam3_session
    for frame in frames:
        a = pruned.update(frame.image)
        monkeypatch.setattr(sam3_module, "prune_sam3_session", lambda *args, **kwargs: None)
        b = unpruned.update(frame.image)
        monkeypatch.setattr(sam3_module, "prune_sam3_session", real_prune)
        assert a.tracker_id.tolist() == b.tracker_id.tolist()
        assert all(np.array_equal(m1, m2) for m1, m2 in zip(a.mask, b.mask, strict=True))
        sizes.append(session_nbytes(pruned.session))
    assert len(pruned.session.processed_frames) == 1 and len(unpruned.session.processed_frames) == 60
    assert max(sizes[30:]) <= sizes[29] * 1.02  # flat once the window is full
    assert session_nbytes(unpruned.session) > 3 * sizes[-1]
    assert pruned.session.num_frames == 60  # what the model reads to size its pointers, pruned or not


def test_the_pipeline_runs_no_detector_and_takes_words(sam3: Sam3SegmenterModel) -> None:
    detector = StandInDetector()
    config = PipelineConfig.model_validate({"segmenter": {"type": "sam3", "model": sam3.name}})
    pipeline = Pipeline(config, Models(detector, sam3), interactive=True)
    pipeline.segmenter.concepts.clear()  # this stream starts with no concept: nothing is found
    frames = _frames(6)
    assert len(pipeline.process(frames[0]).detections) == 0
    result = pipeline.apply_prompt(Prompt("text", text="person"))
    assert "finding 'person'" in result.note and pipeline.takes_words
    outs = [pipeline.process(frame) for frame in frames[1:]]
    assert len(outs[-1].detections) > 0 and detector.calls == 0
    with pytest.raises(PromptError, match=r"SAM 3 takes words"):
        pipeline.apply_prompt(Prompt("box", box_xyxy=(0.0, 0.0, 10.0, 10.0)))


def test_process_with_a_sam3_hub_id(tiny_models: TinyModels, tmp_path: Path) -> None:
    result = run_cli("process", "synthetic:?w=160&h=96&frames=12&objects=2&seed=1", "-o", str(tmp_path / "o.mp4"),
                     "--events", str(tmp_path / "o.jsonl"), "-q", "--set", "segmenter.type=sam3",
                     "--set", f"segmenter.model={tiny_models.SAM3}", "--set", "segmenter.prompt=person",
                     env=tiny_models.offline_env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    found = [d for row in rows[3:] for d in row["detections"]]
    assert found and all(d["class_name"] == "person" and d["track_id"] >= 1 and "mask" in d for d in found)
