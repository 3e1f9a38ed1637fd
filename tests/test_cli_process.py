"""`streamvis process` run as a user would: a subprocess, real media, real codecs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from support import make_clip, run_cli


def _probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        pts = [float(f.pts * video.time_base) for f in container.decode(video=0)]
        streams = [(s.type, s.codec_context.name) for s in container.streams]
        return {"codec": video.codec_context.name, "pix_fmt": video.codec_context.pix_fmt, "pts": pts,
                "streams": streams}


def _moov_before_mdat(path: Path) -> bool:
    data = path.read_bytes()
    return 0 <= data.find(b"moov") < data.find(b"mdat")


def test_real_video_to_browser_mp4_and_jsonl(person_video: Path, models_dir: Path, tmp_path: Path) -> None:
    out, events = tmp_path / "people.mp4", tmp_path / "people.jsonl"
    result = run_cli("process", str(person_video), "--output", str(out), "--events", str(events),
                     "--models-dir", str(models_dir))
    assert result.returncode == 0, result.stderr
    assert "provider in use: cpu" in result.stderr
    source, output = _probe(person_video), _probe(out)
    assert output["codec"] == "h264" and output["pix_fmt"] == "yuv420p" and _moov_before_mdat(out)
    assert len(output["pts"]) == len(source["pts"]) == 1394  # exactly one output frame per input frame
    assert max(abs(a - b) for a, b in zip(output["pts"], source["pts"], strict=True)) < 1e-4
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [r["frame_index"] for r in records] == list(range(1394))
    assert records[10]["pts"] == pytest.approx(source["pts"][10])
    people = [d for r in records for d in r["detections"] if d["class_name"] == "person"]
    assert len(people) > 300
    first = people[0]
    assert set(first) == {"xyxy", "class_id", "class_name", "score", "track_id"} and len(first["xyxy"]) == 4
    track_ids = {d["track_id"] for d in people if d["track_id"] is not None and d["score"] > 0.6}
    assert 1 <= len(track_ids) < 40  # ids persist across frames rather than one per detection


def test_audio_is_copied(car_video: Path, models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cars.mp4"
    result = run_cli("process", str(car_video), "-o", str(out), "--models-dir", str(models_dir), "-q")
    assert result.returncode == 0, result.stderr
    assert ("audio", "aac") in _probe(out)["streams"]
    with av.open(str(car_video)) as a, av.open(str(out)) as b:
        packets_in = sum(1 for p in a.demux(a.streams.audio[0]) if p.size)
        packets_out = sum(1 for p in b.demux(b.streams.audio[0]) if p.size)
    assert packets_out == packets_in  # copied packet for packet


def test_pcm_audio_is_transcoded_to_aac(models_dir: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "pcm.mov", frames=20, fps=10, audio="pcm_s16le")
    out = tmp_path / "pcm_out.mp4"
    result = run_cli("process", str(clip), "-o", str(out), "--models-dir", str(models_dir), "-q")
    assert result.returncode == 0, result.stderr
    probe = _probe(out)
    assert ("audio", "aac") in probe["streams"] and len(probe["pts"]) == 20
    with av.open(str(out)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert samples >= 48000 * 2 * 0.9  # about the 2 s of tone


def test_several_inputs_one_failure_does_not_stop_the_others(models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    make_clip(folder / "a.mp4", frames=12)
    make_clip(folder / "b.mkv", frames=8)
    (folder / "broken.mp4").write_text("not a video")
    extra = make_clip(tmp_path / "c.mp4", frames=5)
    out, events = tmp_path / "out", tmp_path / "events"
    result = run_cli("process", str(folder), str(extra), "-o", str(out), "--events", str(events),
                     "--models-dir", str(models_dir))
    assert result.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]
    assert [len(_probe(out / n)["pts"]) for n in ("a.mp4", "b.mp4", "c.mp4")] == [12, 8, 5]
    assert len((events / "b.jsonl").read_text().splitlines()) == 8
    assert "broken.mp4" in result.stderr and "not a media file" in result.stderr
    assert "streamvis process" in result.stderr and "failed" in result.stderr  # the summary table
    table = result.stderr[result.stderr.index("streamvis process"):]
    assert str(out / "a.mp4") in table and str(folder / "broken.mp4") in table  # whole names off a terminal
    assert "Traceback" not in result.stderr


def test_image_glob_and_synthetic_inputs(models_dir: Path, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        cv2.imwrite(str(frames / f"{i:03d}.jpg"), np.full((120, 161, 3), 30 * i, np.uint8))  # odd width
    out = tmp_path / "glob.mp4"
    result = run_cli("process", f"{frames}/*.jpg", "-o", str(out), "--models-dir", str(models_dir), "-q",
                     "--set", "source.image_fps=12")
    assert result.returncode == 0, result.stderr
    probe = _probe(out)
    assert len(probe["pts"]) == 6 and probe["pts"][1] == pytest.approx(1 / 12, abs=1e-4)
    result = run_cli("process", "synthetic:?frames=15", "-o", str(tmp_path / "syn.mp4"),
                     "--models-dir", str(models_dir), "-q")
    assert result.returncode == 0, result.stderr
    assert len(_probe(tmp_path / "syn.mp4")["pts"]) == 15


def test_set_detector_model_path_and_keyframes(models_dir: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=20)
    events = tmp_path / "e.jsonl"
    weights = models_dir / "yolox-nano" / "yolox_nano.onnx"
    result = run_cli("process", str(clip), "-o", str(tmp_path / "o.mp4"), "--events", str(events), "-q",
                     "--set", f"detector.model={weights}", "--set", "detector.every_n_frames=5")
    assert result.returncode == 0, result.stderr
    keyframes = [json.loads(line)["keyframe"] for line in events.read_text().splitlines()]
    assert keyframes == [i % 5 == 0 for i in range(20)]


def test_truncated_file_leaves_the_frames_before_the_cut(person_video: Path, models_dir: Path,
                                                          tmp_path: Path) -> None:
    data = person_video.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / "half_out.mp4"
    result = run_cli("process", str(half), "-o", str(out), "--models-dir", str(models_dir), "-q")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "of the 1394 frames" in result.stderr and "the output holds the" in result.stderr
    decoded = len(_probe(out)["pts"])
    assert 600 < decoded < 1394 and f"holds the {decoded} frames" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(["missing.mp4"], 1, "input not found: missing.mp4"),
     (["TEXT"], 1, "not a media file FFmpeg can read"),
     (["rtsp://127.0.0.1:9/cam"], 1, "connection refused"),
     (["synthetic:", "--set", "detector.modle=x"], 2, "detector.modle: unknown field"),
     (["synthetic:", "--set", "tracker.lost_track_s=-1"], 2, "tracker.lost_track_s"),
     (["synthetic:", "--pipeline", "nothere"], 2, "unknown pipeline 'nothere'"),
     (["synthetic:", "--set", "detector.model=/no/model.onnx"], 2, "model file not found: /no/model.onnx"),
     (["synthetic:", "-o", "OUT/x.avi"], 2, "streamvis writes .mp4, .mov, .mkv, .webm files, not .avi"),
     (["synthetic:", "--events", "OUT/x.json"], 2, "--events OUT/x.json: expected a .jsonl file or a folder"),
     (["synthetic:", "-p", "narrate", "--captions", "OUT/x.srt"], 2, "expected a .vtt file or a folder")],
)
def test_bad_input_gets_one_line_and_an_exit_code(tmp_path: Path, models_dir: Path, args, code, message) -> None:
    (tmp_path / "text.mp4").write_text("hello\n" * 100)
    args = [str(tmp_path / "text.mp4") if a == "TEXT" else a.replace("OUT", str(tmp_path)) for a in args]
    message = message.replace("OUT", str(tmp_path))
    if "-o" not in args:
        args += ["-o", str(tmp_path / "o.mp4")]
    result = run_cli("process", *args, "--models-dir", str(models_dir), "-q")
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "o.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()], "an output name never becomes a folder"


@pytest.mark.parametrize(("args", "field"), [
    (["-p", "narrate", "--set", "narrator.type=florence2"], "narrator.model"),
    (["--set", "detector.type=florence2"], "detector.model"),
    (["-p", "segment", "--set", "detector.type=yolox"], "segmenter.model"),
])
def test_a_hub_model_without_network_fails_at_once_naming_its_field(tmp_path: Path, models_dir: Path,
                                                                    args: list[str], field: str) -> None:
    no_hub = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    started = time.monotonic()
    result = run_cli("process", "synthetic:?frames=3", "-o", str(tmp_path / "o.mp4"), *args,
                     "--models-dir", str(models_dir), env=no_hub)
    assert time.monotonic() - started < 10
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("info: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {field}: model '") and "cannot reach 127.0.0.1" in errors[0]
    assert "Retrying" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("process", "synthetic:", "-o", str(tmp_path / "o.mp4"), "--set", "detector.modle=x",
                     "--debug")
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_ctrl_c_leaves_a_playable_mp4(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "long.mp4"
    exe = Path(sys.executable).parent / "streamvis"
    proc = subprocess.Popen([str(exe), "process", "synthetic:?frames=0&w=320&h=180", "-o", str(out),
                             "--models-dir", str(models_dir)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20000):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stderr and "the output holds the" in stderr
    frames = len(_probe(out)["pts"])
    assert frames > 10 and f"holds the {frames} frames" in stderr


def test_progress_lines_when_not_a_terminal(models_dir: Path, tmp_path: Path) -> None:
    import logging

    from streamvis.progress import FrameProgress

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("streamvis.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with FrameProgress("clip", total=100, interval_s=0) as bar:
            for i in range(1, 4):
                bar.update(i)
    finally:
        logger.removeHandler(handler)
    assert records and records[-1].startswith("clip: 3/100 frames,") and "ETA" in records[-1]
