"""`streamvis process` with segmentation, end to end on real clips. Tiny random SAM 2.1 and Florence-2 models are
loaded by hub id from a private Hugging Face cache in offline mode: the path a user's `--set segmenter.model=...`
takes. Masks from random weights are not meaningful; what is checked is the pipeline's contract."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import av
import pytest
from support import PERSON_VIDEO, TinyModels, cut_clip, need, run_cli

from streamvis.serialize import rle_to_masks


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


FRAMES = 120


@pytest.fixture(scope="module")
def person_clip(tmp_path_factory) -> Path:
    need(PERSON_VIDEO)
    # frames 0-119: a monitor in view throughout; a person walks in from about frame 60
    return cut_clip(PERSON_VIDEO, tmp_path_factory.mktemp("clips") / f"person-{FRAMES}.mp4", FRAMES)


def test_yolox_with_sam2_propagation(tiny_models: TinyModels, person_clip: Path, models_dir: Path,
                                     tmp_path: Path) -> None:
    out, events = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = run_cli("process", str(person_clip), "-o", str(out), "--events", str(events), "-q",
                     "--models-dir", str(models_dir),
                     "--set", "detector.confidence=0.25", "--set", "detector.every_n_frames=5",
                     "--set", "segmenter.type=sam2", "--set", f"segmenter.model={tiny_models.SAM2}",
                     "--set", "segmenter.max_missed_keyframes=10", env=tiny_models.offline_env)
    assert result.returncode == 0, result.stderr
    rows = _rows(events)
    assert _frames(out) == len(rows) == FRAMES
    frames_by_id: dict[int, list[int]] = defaultdict(list)
    class_by_id: dict[int, str] = {}
    for row in rows:
        assert row["detections"], f"frame {row['frame_index']}: no masks"  # masks from the first keyframe on
        for det in row["detections"]:
            mask = rle_to_masks([det["mask"]])[0]
            assert det["mask"]["size"] == [432, 768] and mask.any()
            assert isinstance(det["track_id"], int)
            frames_by_id[det["track_id"]].append(row["frame_index"])
            assert class_by_id.setdefault(det["track_id"], det["class_name"]) == det["class_name"]
    monitors = [i for i, name in class_by_id.items() if name == "tvmonitor"]
    people = [i for i, name in class_by_id.items() if name == "person"]
    assert len(monitors) == 1 and frames_by_id[monitors[0]] == list(range(FRAMES))  # one id, every frame
    walker = max(people, key=lambda i: len(frames_by_id[i]))
    first = frames_by_id[walker][0]
    assert 55 <= first <= 75 and frames_by_id[walker] == list(range(first, FRAMES))  # added mid-stream, kept
    assert len(class_by_id) <= 4


def test_segment_pipeline_florence2_and_sam2(tiny_models: TinyModels, person_clip: Path, tmp_path: Path) -> None:
    out, events = tmp_path / "seg.mp4", tmp_path / "seg.jsonl"
    result = run_cli("process", str(person_clip), "-o", str(out), "--events", str(events), "-q", "-p", "segment",
                     "--set", f"detector.model={tiny_models.FLORENCE}", "--set", f"segmenter.model={tiny_models.SAM2}",
                     "--set", "detector.every_n_frames=45", "--set", "detector.max_new_tokens=16",
                     env=tiny_models.offline_env)
    assert result.returncode == 0, result.stderr
    rows = _rows(events)
    assert _frames(out) == len(rows) == FRAMES
    assert [row["frame_index"] for row in rows if row["keyframe"]] == list(range(0, FRAMES, 45))
    for row in rows:  # a random Florence-2 writes no valid objects; whatever it gives must be well-formed
        for det in row["detections"]:
            assert {"xyxy", "class_name", "track_id", "mask"} <= set(det)


def test_grounded_pipeline_prompt_from_command_line(tiny_models: TinyModels, car_video: Path,
                                                    tmp_path: Path) -> None:
    clip = cut_clip(car_video, tmp_path / "car-12.mp4", 12)
    out, events = tmp_path / "g.mp4", tmp_path / "g.jsonl"
    result = run_cli("process", str(clip), "-o", str(out), "--events", str(events), "-p", "grounded", "--debug",
                     "--set", f"detector.model={tiny_models.FLORENCE}", "--set", f"segmenter.model={tiny_models.SAM2}",
                     "--set", "detector.prompt=red car. person", "--set", "detector.every_n_frames=6",
                     "--set", "detector.max_new_tokens=8", env=tiny_models.offline_env)
    assert result.returncode == 0, result.stderr
    assert "task <CAPTION_TO_PHRASE_GROUNDING>" in result.stderr
    assert _frames(out) == len(_rows(events)) == 12


def test_model_not_in_cache_offline_is_one_clear_line(tiny_models: TinyModels, person_clip: Path,
                                                      tmp_path: Path) -> None:
    result = run_cli("process", str(person_clip), "-o", str(tmp_path / "x.mp4"), "-p", "segment", "-q",
                     "--set", f"detector.model={tiny_models.FLORENCE}", env=tiny_models.offline_env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "facebook/sam2.1-hiera-tiny" in lines[0] and "segmenter.model" in lines[0]
    assert "offline" in lines[0] and "hf download" in lines[0]


def test_prompt_required_for_grounding(tmp_path: Path, person_clip: Path) -> None:
    result = run_cli("process", str(person_clip), "-o", str(tmp_path / "x.mp4"), "-p", "grounded",
                     "--set", "detector.prompt=")
    assert result.returncode == 2
    assert "detector.prompt" in result.stderr and "needs a text prompt" in result.stderr


def test_yolox_with_sam_image_masks_on_keyframes(tiny_models: TinyModels, person_clip: Path, models_dir: Path,
                                                 tmp_path: Path) -> None:
    clip = cut_clip(person_clip, tmp_path / "person-80.mp4", 80)
    events = tmp_path / "sam.jsonl"
    result = run_cli("process", str(clip), "-o", str(tmp_path / "sam.mp4"), "--events", str(events), "-q",
                     "--models-dir", str(models_dir), "--set", "detector.every_n_frames=4",
                     "--set", "segmenter.type=sam", "--set", f"segmenter.model={tiny_models.SAM}",
                     env=tiny_models.offline_env)
    assert result.returncode == 0, result.stderr
    rows = _rows(events)
    assert len(rows) == 80
    with_people = [row for row in rows if any(d["class_name"] == "person" for d in row["detections"])]
    assert with_people  # the person walks in around frame 60
    for row in rows:
        for det in row["detections"]:
            assert rle_to_masks([det["mask"]]).shape == (1, 432, 768)  # keyframe masks, carried in between
