"""`streamvis eval`: a labelled clip in, tracking metrics out (trackers.eval), for settings side by side. The labels
here are made from a run of the same pipeline on the shared person video, so a perfect score, and a worse one after
an identity is swapped in them, show that the path from the clip to the metrics is right; they say nothing about
how well streamvis tracks (that needs public ground truth: `benchmarks/` and the docs say what was measured)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from support import PERSON_VIDEO, cut_clip, need, run_cli

from streamvis.config import PipelineConfig
from streamvis.pipeline.loading import load_models
from streamvis.pipeline.step import Pipeline
from streamvis.sources import open_source

FRAMES = 150  # a person walks in at about frame 64 and stays


def _labels_from_a_run(source: str, models_dir: Path, fps: float | None = None) -> list[list[float]]:
    """MOTChallenge ground-truth rows (frame, id, x, y, w, h, consider, class 1, visibility) of the people one
    run of the default pipeline tracks."""
    config = PipelineConfig.model_validate({"source": {"image_fps": fps or 30}})
    src = open_source(source, config.source)
    pipeline = Pipeline(config, load_models(config, models_dir), src.fps, annotate=False)
    rows = []
    for frame in src:
        d = pipeline.process(frame).detections
        if d.tracker_id is None or not len(d):
            continue
        for (x1, y1, x2, y2), track, name in zip(d.xyxy.tolist(), d.tracker_id, d.data["class_name"], strict=True):
            if track >= 0 and name == "person":
                rows.append([frame.index + 1, int(track) + 1, x1, y1, x2 - x1, y2 - y1, 1, 1, 1])
    src.close()
    return rows


def _write(rows: list[list[float]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows))
    return path


def _eval(*args: str) -> list[dict]:
    result = run_cli("eval", *args, "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(PERSON_VIDEO)
    return cut_clip(PERSON_VIDEO, tmp_path_factory.mktemp("eval") / "people.mp4", FRAMES)


def test_a_clip_scored_against_its_own_tracks_is_perfect_and_a_split_identity_is_not(
        clip: Path, models_dir: Path, tmp_path: Path) -> None:
    rows = _labels_from_a_run(str(clip), models_dir)
    frames = sorted({int(r[0]) for r in rows})
    assert len(frames) > 50, "the clip should show a tracked person for a while"
    gt = _write(rows, tmp_path / "gt.txt")
    middle = frames[len(frames) // 2]
    split = [[r[0], r[1] + 1000, *r[2:]] if r[0] >= middle else r for r in rows]  # one person becomes two
    gt_swapped = _write(split, tmp_path / "gt_split.txt")
    perfect = _eval(str(clip), "--gt", str(gt), "--models-dir", str(models_dir),
                    "--variant", "sort=tracker.type=sort")
    assert [r["variant"] for r in perfect] == ["default", "sort"]
    metrics = perfect[0]["metrics"]
    assert metrics["MOTA"] == pytest.approx(1.0) and metrics["IDF1"] == pytest.approx(1.0)
    assert metrics["HOTA"] > 0.95 and metrics["IDSW"] == 0 and perfect[0]["frames"] == FRAMES
    worse = _eval(str(clip), "--gt", str(gt_swapped), "--models-dir", str(models_dir))[0]["metrics"]
    # every box is still found (MOTA), but one track can stand for one labelled person only (IDF1, HOTA's AssA)
    assert worse["MOTA"] == pytest.approx(1.0) and worse["IDF1"] < 0.8 and worse["AssA"] < metrics["AssA"]


def test_a_motchallenge_sequence_folder_is_read_as_it_is(clip: Path, models_dir: Path, tmp_path: Path) -> None:
    seq = tmp_path / "PEOPLE-01"
    (seq / "img1").mkdir(parents=True)
    src = open_source(str(clip))
    for frame in src:
        cv2.imwrite(str(seq / "img1" / f"{frame.index + 1:06d}.jpg"), frame.image)
        height, width = frame.image.shape[:2]
    src.close()
    (seq / "seqinfo.ini").write_text(f"[Sequence]\nname=PEOPLE-01\nimDir=img1\nframeRate=10\nseqLength={FRAMES}\n"
                                     f"imWidth={width}\nimHeight={height}\nimExt=.jpg\n")
    _write(_labels_from_a_run(str(seq / "img1" / "*.jpg"), models_dir, fps=10), seq / "gt" / "gt.txt")
    scored = _eval(str(seq), "--models-dir", str(models_dir))[0]
    assert scored["sequence"] == "PEOPLE-01" and scored["frames"] == FRAMES
    assert scored["metrics"]["IDF1"] == pytest.approx(1.0)


@pytest.mark.parametrize(("make_args", "says"), [
    (lambda clip, tmp: [str(clip)], "a video needs --gt"),
    (lambda clip, tmp: [str(tmp)], "needs seqinfo.ini"),
    (lambda clip, tmp: [str(clip), "--gt", str(_write([[1, 1, 1500, 900, 60, 40, 1, 1, 1]], tmp / "big.txt"))],
     "a rescaled copy needs its boxes rescaled"),
    (lambda clip, tmp: [str(clip), "--gt", str(tmp / "none.txt")], "no such file"),
    (lambda clip, tmp: [str(clip), "--gt", str(tmp / "none.txt"), "--variant", "a,b"], "--variant"),
])
def test_wrong_inputs_get_one_line_naming_the_problem(clip: Path, models_dir: Path, tmp_path: Path, make_args,
                                                      says: str) -> None:
    result = run_cli("eval", *make_args(clip, tmp_path), "--models-dir", str(models_dir), timeout=300)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_labelled_images_get_the_detectors_coco_map_per_setting(coco128: Path, models_dir: Path) -> None:
    """The 128 real COCO photos with their labels (public ground truth), the real YOLOX-nano: measured 0.272
    mAP@0.5:0.95 at the detect pipeline's confidence 0.3, and less when only surer boxes are kept."""
    result = run_cli("eval", str(coco128), "--models-dir", str(models_dir), "--json",
                     "--variant", "surer=detector.confidence=0.6", timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {row["variant"]: row["metrics"] for row in json.loads(result.stdout)}
    assert set(rows) == {"default", "surer"}
    assert 0.25 <= rows["default"]["mAP"] <= 0.35 and rows["default"]["mAP50"] > rows["default"]["mAP"]
    assert rows["surer"]["mAP"] < rows["default"]["mAP"]  # fewer boxes kept: recall, and so AP, falls
