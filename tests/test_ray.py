"""`streamvis process --ray`: the offline pipeline on a local Ray cluster (2 CPUs) through Ray Data, against a
local run of the same inputs: the same detections frame by frame, track ids continuous across chunk borders, the
same moments indexed, a killed worker retried, a failing input reported while the others finish."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from support import CAR_VIDEO, PERSON_VIDEO, VIDEOS, TinyModels, cut_clip, need, run_cli

from streamvis.offline.on_ray import Chunk, plan_chunks, stitch_tracks
from streamvis.sources import MediaIndex

pytest.importorskip("ray")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _boxes(record: dict) -> list[tuple]:
    return [(d["xyxy"], d["class_id"], d["score"]) for d in record["detections"]]


def compare_with_local(local: Path, distributed: Path, tracks: bool = True) -> float:
    """Asserts the same detections frame by frame; returns the share of the local run's tracks that keep one id
    on the Ray run (`tracks`: there must be some)."""
    want, got = _records(local), _records(distributed)
    assert len(got) == len(want)
    ids_of: dict[int, set[int | None]] = defaultdict(set)
    for a, b in zip(want, got, strict=True):
        assert (a["frame_index"], a["pts"], a["keyframe"]) == (b["frame_index"], b["pts"], b["keyframe"])
        assert _boxes(a) == _boxes(b), f"frame {a['frame_index']}: detections differ"
        for da, db in zip(a["detections"], b["detections"], strict=True):
            if da["track_id"] is not None:
                ids_of[da["track_id"]].add(db["track_id"])
    assert ids_of or not tracks, "no tracks to compare"
    if not ids_of:
        return 1.0
    return sum(len(ids) == 1 and None not in ids for ids in ids_of.values()) / len(ids_of)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the real videos cut short, keyframes where the originals have them: the person video's first
    40 s (a keyframe each second), the car video's first 24 s (every 60 frames), the bottle video's first 10 s."""
    need(VIDEOS)
    folder = tmp_path_factory.mktemp("videos")
    cut_clip(PERSON_VIDEO, folder / "person.mp4", 400, {"g": "10"})
    cut_clip(CAR_VIDEO, folder / "car.mp4", 300, {"g": "60"})
    cut_clip(VIDEOS / "intel_bottle-detection.mp4", folder / "bottle.mp4", 300)
    return folder


def _indexing(tiny_models: TinyModels, index: Path) -> list[str]:
    return ["--index", str(index), "--set", "embedder.type=clip", "--set", f"embedder.model={tiny_models.CLIP}"]


@pytest.fixture(scope="module")
def local_run(videos: Path, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    result = run_cli("process", str(videos), "--output", str(out), "--events", str(out), "--quiet",
                     *_indexing(tiny_models, out / "moments.duckdb"), env=tiny_models.offline_env, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


def _moments(index: Path) -> tuple[set[tuple], set[tuple]]:
    """An index's tracks (stream, class, first and last second) and scene keyframes (stream, second)."""
    import duckdb

    with duckdb.connect(str(index), read_only=True) as db:
        tracks = {(s, c, round(a, 3), round(b, 3)) for s, c, a, b in
                  db.execute("SELECT stream, class, start_s, end_s FROM tracks").fetchall()}
        scenes = {(s, round(t, 3)) for s, t in db.execute("SELECT stream, t_s FROM scenes").fetchall()}
    return tracks, scenes


def test_a_folder_on_ray_matches_a_local_run(videos: Path, local_run: Path, tmp_path: Path, models_dir: Path,
                                             tiny_models: TinyModels) -> None:
    # 10 s chunks at keyframes: the person clip becomes 4 chunks, the car clip 2, the bottle clip 1; each input's
    # write task indexes it into a part of its own, merged into one index at the end
    index = tmp_path / "moments.duckdb"
    result = run_cli("process", str(videos), "--output", str(tmp_path), "--events", str(tmp_path), "--ray",
                     "--chunk-s", "10", "--models-dir", str(models_dir), *_indexing(tiny_models, index),
                     env=tiny_models.offline_env, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "in 7 chunks on 2 workers" in result.stderr
    for video in sorted(videos.glob("*.mp4")):
        continuity = compare_with_local(local_run / f"{video.stem}.jsonl", tmp_path / f"{video.stem}.jsonl")
        assert continuity >= 0.95, f"{video.name}: {continuity:.0%} of tracks keep one id across chunks"
        assert (tmp_path / f"{video.stem}.mp4").stat().st_size > 10_000
    # the merged index holds what a local run indexes: the same scene keyframes, the same tracks (their ids may
    # differ where a chunk border renumbered one), thumbnails beside the index, no part left behind
    (ray_tracks, ray_scenes), (local_tracks, local_scenes) = _moments(index), _moments(local_run / "moments.duckdb")
    assert ray_scenes == local_scenes and {s for s, _ in ray_scenes} == {"person", "car", "bottle"}
    assert local_tracks and len(ray_tracks & local_tracks) >= 0.9 * len(local_tracks)
    assert not (tmp_path / "moments.duckdb.parts").exists()
    found = json.loads(run_cli("search", "a person", str(index), "--json", "--top", "100",
                               env=tiny_models.offline_env).stdout)
    assert found and all((tmp_path / m["thumbnail"]).is_file() for m in found)


@pytest.fixture(scope="module")
def odd_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every row of the media torture table that `--ray` takes (a video file), and the timing rows on real footage
    with a keyframe every 10 frames, so that chunks cut them: the person video's first 20 s as H.264 with B-frames
    in AVI (pts out of order) and as a variable frame rate MKV (a 3-frame gap every 25 frames)."""
    from test_media_torture import CASES

    need(VIDEOS)
    folder = tmp_path_factory.mktemp("odd")
    for case in CASES:
        if case.frames is not None:
            made = case.make(folder)
            if made.is_dir():  # photos: --ray takes video files
                shutil.rmtree(made)
    cut_clip(PERSON_VIDEO, folder / "walk.avi", 200, {"g": "10", "bf": "3", "b-adapt": "0"})
    cut_clip(PERSON_VIDEO, folder / "gaps.mkv", 200, {"g": "10"}, pts=lambda i: i + 3 * (i // 25))
    return folder


def test_odd_media_on_ray_matches_a_local_run(odd_videos: Path, tmp_path: Path, models_dir: Path) -> None:
    """Also: an input that cannot be read is reported in the summary while the others finish."""
    local = tmp_path / "local"
    result = run_cli("process", str(odd_videos), "--output", str(local), "--events", str(local),
                     "--models-dir", str(models_dir), "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((odd_videos / "b-frames.mp4").read_bytes()[:2000])  # the header, cut short
    distributed = tmp_path / "ray"
    result = run_cli("process", str(odd_videos), str(broken), "--output", str(distributed), "--events",
                     str(distributed), "--ray", "--chunk-s", "5", "--chunk-overlap-s", "2", "--models-dir",
                     str(models_dir), timeout=900)
    assert result.returncode != 0
    assert "broken.mp4" in result.stderr and "Traceback" not in result.stderr
    events = sorted(local.glob("*.jsonl"))
    assert len(events) == 11  # the two b-frames clips are b-frames.jsonl and b-frames_2.jsonl
    for path in events:
        real = path.stem in ("walk", "gaps")
        continuity = compare_with_local(path, distributed / path.name, tracks=real)
        if real:
            assert continuity >= 0.95, f"{path.name}: {continuity:.0%} of tracks keep one id across chunks"
    assert (distributed / "walk.mp4").stat().st_size > 10_000


def test_plan_cuts_long_videos_at_keyframes_with_an_overlap() -> None:
    keys = [(pts, pts, pts) for pts in range(0, 1400 * 100, 100)]  # 1400 frames at 10 fps, a keyframe every 10
    media = MediaIndex(keys, list(range(0, 1400, 10)), 10.0)
    chunks = plan_chunks(0, "v.mp4", media, chunk_s=30, overlap_s=2)
    assert [(c.start, c.end) for c in chunks] == [(0, 300), (300, 600), (600, 900), (900, 1200), (1200, 1400)]
    assert all(c.warm_start == max(0, c.start - 20) for c in chunks)
    assert all(c.seek_frame <= c.warm_start for c in chunks)  # decoding starts at or before the overlap
    assert all(c.seek_key == keys[c.seek_frame] for c in chunks[1:])  # found again by its packet's key
    short = plan_chunks(0, "v.mp4", MediaIndex(keys[:350], list(range(0, 350, 10)), 10.0), chunk_s=30,
                        overlap_s=2)
    assert [(c.start, c.end) for c in short] == [(0, 350)]  # no 50-frame chunk at the end


def _det(box: list[float], track: int | None, cls: int = 0) -> dict:
    return {"xyxy": box, "class_id": cls, "class_name": "person", "score": 0.9, "track_id": track}


def test_stitching_carries_ids_over_the_overlap() -> None:
    first = Chunk(0, "v", 0, 0, 0, 4, 0)
    second = Chunk(0, "v", 1, 2, 4, 6, 0)
    a, b, c = [0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]
    records_1 = [{"frame_index": i, "keyframe": True, "detections": [_det(a, 3), _det(b, 5)]} for i in range(4)]
    # the second chunk's own tracker numbers the same objects 1 and 2, and a new one (c) 4
    records_2 = [{"frame_index": i, "keyframe": True, "detections": [_det(b, 1), _det(a, 2)]} for i in range(2, 4)]
    records_2 += [{"frame_index": i, "keyframe": True, "detections": [_det(a, 2), _det(c, 4), _det(b, None)]}
                  for i in range(4, 6)]
    stitched = stitch_tracks([(second, records_2), (first, records_1)])
    assert [r["frame_index"] for r in stitched] == list(range(6))  # each frame once, the chunk's own frames
    assert [d["track_id"] for d in stitched[0]["detections"]] == [3, 5]  # the first chunk keeps its ids
    assert [d["track_id"] for d in stitched[5]["detections"]] == [3, 6, None]  # a: 3 again; c: new; unconfirmed


def test_a_killed_worker_is_retried(videos: Path, local_run: Path, tmp_path: Path, models_dir: Path) -> None:
    car_video = videos / "car.mp4"
    killed: list[int] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            found = subprocess.run(["pgrep", "-f", "ChunkDetector"], capture_output=True, text=True).stdout.split()
            if found:
                time.sleep(1)  # let it start a chunk (the whole video takes a worker a few seconds on a fast CPU)
                try:
                    os.kill(int(found[0]), signal.SIGKILL)
                except ProcessLookupError:  # it finished first: the next worker, if any, is killed instead
                    continue
                killed.append(int(found[0]))
            time.sleep(0.2)

    killer = threading.Thread(target=kill_first_worker, daemon=True)
    killer.start()
    result = run_cli("process", str(car_video), "--output", str(tmp_path / "car.mp4"), "--events",
                     str(tmp_path / "car.jsonl"), "--ray", "--chunk-s", "5", "--models-dir", str(models_dir),
                     timeout=600)
    killer.join(timeout=5)
    assert killed, "no Ray worker ran to be killed"
    assert result.returncode == 0, result.stderr
    assert compare_with_local(local_run / f"{car_video.stem}.jsonl", tmp_path / "car.jsonl") >= 0.95


def test_segmenters_are_refused_with_a_reason(car_video: Path, tmp_path: Path) -> None:
    result = run_cli("process", str(car_video), "--output", str(tmp_path / "x.mp4"), "--ray", "-p", "segment")
    assert result.returncode != 0
    assert "--ray runs detect pipelines" in result.stderr


def test_workers_take_a_gpu_only_when_the_detector_would_use_one() -> None:
    from streamvis.config import load_pipeline
    from streamvis.offline.on_ray import wants_gpu

    assert wants_gpu(load_pipeline("detect"))  # tensorrt, cuda, cpu: a GPU where the cluster has one
    assert not wants_gpu(load_pipeline("detect", ["detector.providers=[cpu]"]))
