"""Media torture test: odd inputs a user will bring, each made here with PyAV, each with a clear outcome.

Every row makes one input and states what streamvis does with it: the frames it yields (count, size, pts order,
what the pixels show) or the one-line error it gives. The "odd inputs" table of docs/guides/inputs.md says the same.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from support import cut_clip, run_cli

from streamvis.errors import SourceError
from streamvis.frame import Frame
from streamvis.sources import FrameSpan, index_media, open_source


def stripe_image(width: int, height: int, i: int = 0) -> np.ndarray:
    """Dark frame with a white stripe on the left (so orientation can be checked) and a moving square."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, : max(1, width // 8)] = 255
    size = max(1, min(width, height) // 4)
    x = (width // 4 + 2 * i) % max(1, width - size)
    image[height // 2 - size // 2: height // 2 + size // 2 or 1, x: x + size] = (0, 0, 255)
    return image


def write_video(path: Path, codec: str, frames: int = 12, size_wh: tuple[int, int] = (160, 96), fps: int = 10,
                pix_fmt: str = "yuv420p", options: dict[str, str] | None = None, fmt: str | None = None,
                pts: list[int] | None = None) -> Path:
    """A clip in any codec and container PyAV writes; `pts` (in 1/fps units) gives variable timing."""
    width, height = size_wh
    with _scheduling_kept(), av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, fps)
        images = [av.VideoFrame.from_ndarray(stripe_image(width, height, i), format="bgr24") for i in range(frames)]
        if pts is not None:
            for image, at in zip(images, pts, strict=True):
                image.pts, image.time_base = at, Fraction(1, fps)
        _encode_all(container, stream, images)
    return path


@contextlib.contextmanager
def _scheduling_kept() -> Iterator[None]:
    """SVT-AV1 (libsvtav1) switches the thread that opens it to SCHED_FIFO, priority 99, when run as root: a test
    process left so starves every server and client it starts, and its children inherit it. Put it back."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def _encode_all(container: Any, stream: Any, frames: list[Any]) -> None:
    for frame in [*frames, None]:  # None flushes the encoder
        for packet in stream.encode(frame):
            container.mux(packet)


def set_display_rotation(mp4: Path) -> Path:
    """Give the MP4's video track a phone's portrait display matrix (shown turned 90 degrees clockwise)."""
    data = bytearray(mp4.read_bytes())
    box = data.index(b"tkhd") - 4
    matrix_at = box + (60 if data[box + 8] == 1 else 48)
    data[matrix_at: matrix_at + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    mp4.write_bytes(bytes(data))
    return mp4


def unknown_codec(path: Path) -> Path:
    """An MP4 whose video sample entry names a codec nobody knows ('zzzz' instead of 'avc1')."""
    write_video(path, "libx264", 5)
    data = bytearray(path.read_bytes())
    at = data.index(b"avc1", data.index(b"stsd"))
    data[at: at + 4] = b"zzzz"
    path.write_bytes(bytes(data))
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        chunks = []
        for start in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            chunks.append(frame)
        _encode_all(container, stream, chunks)
    return path


def photo_folder(path: Path) -> Path:
    """Photos of different sizes and orientations, as a camera roll or coco128 holds them."""
    path.mkdir()
    for i, (w, h) in enumerate([(640, 480), (416, 640), (300, 300), (1280, 720)]):
        cv2.imwrite(str(path / f"{i:02d}.jpg"), stripe_image(w, h))
    return path


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    frames: int | None = None  # frames expected (None: an error is expected)
    size_wh: tuple[int, int] | None = None  # the first frame's size
    error: str = ""  # the one-line error's key words
    check: Callable[[list[Frame]], None] | None = None


def _upright(frames: list[Frame]) -> None:
    top, bottom = frames[0].image[:4].mean(), frames[0].image[-4:].mean()
    assert top > 200 > bottom, "the stripe on the left of the stored picture is on top once turned upright"


def _each_own_size(frames: list[Frame]) -> None:
    assert [f.resolution_wh for f in frames] == [(640, 480), (416, 640), (300, 300), (1280, 720)]


def _vfr(frames: list[Frame]) -> None:
    assert [round(f.pts * 10) for f in frames] == [0, 1, 2, 5, 6, 7, 20, 21, 22, 23]  # real gaps kept


CASES = [
    Case("H.264 with B-frames in AVI (pts out of order)",
         lambda d: write_video(d / "b-frames.avi", "libx264", 30, options={"bf": "3"}), 30, (160, 96)),
    Case("H.264 with B-frames in MP4", lambda d: write_video(d / "b-frames.mp4", "libx264", 30,
                                                             options={"bf": "3"}), 30, (160, 96)),
    Case("variable frame rate MKV", lambda d: write_video(d / "vfr.mkv", "libx264", 10,
                                                          pts=[0, 1, 2, 5, 6, 7, 20, 21, 22, 23]), 10,
         check=_vfr),
    Case("phone video with rotation metadata",
         lambda d: set_display_rotation(write_video(d / "portrait.mp4", "libx264", 6, size_wh=(160, 96))), 6,
         (96, 160), check=_upright),
    Case("HEVC 10-bit", lambda d: write_video(d / "hevc10.mp4", "libx265", 8, pix_fmt="yuv420p10le",
                                              options={"x265-params": "log-level=none"}), 8, (160, 96)),
    Case("VP9 in WebM", lambda d: write_video(d / "vp9.webm", "libvpx-vp9", 8), 8, (160, 96)),
    Case("AV1 in MKV", lambda d: write_video(d / "av1.mkv", "libsvtav1", 8, size_wh=(192, 128),
                                             options={"preset": "12"}), 8, (192, 128)),
    Case("1x1 frames", lambda d: write_video(d / "tiny.mkv", "ffv1", 5, size_wh=(1, 1), pix_fmt="yuv444p"), 5,
         (1, 1)),
    Case("4K frames", lambda d: write_video(d / "uhd.mp4", "libx264", 3, size_wh=(3840, 2160),
                                            options={"preset": "ultrafast"}), 3, (3840, 2160)),
    Case("folder of photos of different sizes", lambda d: photo_folder(d / "photos"), 4, (640, 480),
         check=_each_own_size),
    Case("audio only", lambda d: audio_only(d / "speech.m4a"), error="has no video stream"),
    Case("a codec FFmpeg cannot decode", lambda d: unknown_codec(d / "unknown.mp4"),
         error="its video codec is not one this FFmpeg build decodes"),
    Case("zero-byte file", lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4",
         error="not a media file FFmpeg can read"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_odd_input(case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    path = case.make(tmp_path)
    if case.frames is None:
        with pytest.raises(SourceError) as error:
            open_source(str(path))
        message = str(error.value)
        assert case.error in message and "\n" not in message and path.name in message
        return
    frames = list(open_source(str(path)))
    assert len(frames) == case.frames
    if case.size_wh:
        assert frames[0].resolution_wh == case.size_wh
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames)), [f.pts for f in frames]
    assert [f.index for f in frames] == list(range(len(frames)))
    if case.check:
        case.check(frames)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def _tracked_share(events: Path) -> tuple[float, list[float]]:
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    people = [d for row in rows for d in row["detections"] if d["class_name"] == "person"]
    return sum(d["track_id"] is not None for d in people) / max(1, len(people)), [row["pts"] for row in rows]


def test_b_frames_in_avi_track_as_well_as_mp4(person_video: Path, models_dir: Path, tmp_path: Path) -> None:
    """The case users met: H.264 with B-frames in AVI sent the tracker back in time (hundreds of raw warnings,
    42% of people tracked). Now the AVI tracks as well as the same frames in MP4, with one info line."""
    b_frames = {"bf": "3", "b-adapt": "0"}
    shares, timings = [], []
    for name in ("walk.mp4", "walk.avi"):
        clip = cut_clip(person_video, tmp_path / name, 150, b_frames)
        events = tmp_path / f"{name}.jsonl"
        result = run_cli("process", str(clip), "-o", str(tmp_path / f"{name}.out.mp4"), "--events", str(events),
                         "--models-dir", str(models_dir))
        assert result.returncode == 0, result.stderr
        assert "warning" not in result.stderr.lower(), result.stderr
        share, pts = _tracked_share(events)
        shares.append(share)
        timings.append(pts)
    assert "timing frames by decode timestamps" in result.stderr  # the AVI's, said once
    assert all(b > a for a, b in itertools.pairwise(timings[1]))
    steps = [[b - a for a, b in itertools.pairwise(pts)] for pts in timings]
    assert steps[1] == pytest.approx(steps[0], abs=1e-3)  # the AVI's frames as evenly timed as the MP4's
    assert shares[0] > 0.8 and shares[1] >= shares[0] - 0.02, shares


@pytest.mark.parametrize("name", ["out.mp4", "out.mov", "out.mkv", "out.webm"])
def test_the_output_container_follows_the_name(name: str, tmp_path: Path, models_dir: Path) -> None:
    clip = write_video(tmp_path / "in.mp4", "libx264", 10)
    out = tmp_path / "results" / name
    result = run_cli("process", str(clip), "-o", str(out), "--models-dir", str(models_dir), "-q")
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    with av.open(str(out)) as container:
        codec = container.streams.video[0].codec_context.name
        assert codec == ("vp9" if name.endswith(".webm") else "h264")
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_mixed_size_photos_make_one_letterboxed_video(tmp_path: Path, models_dir: Path) -> None:
    folder = photo_folder(tmp_path / "photos")
    out, events = tmp_path / "photos.mp4", tmp_path / "photos.jsonl"
    result = run_cli("process", str(folder), "-o", str(out), "--events", str(events),
                     "--models-dir", str(models_dir), "-q")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        images = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert [im.shape[:2] for im in images] == [(480, 640)] * 4  # the first photo's size
    portrait = images[1]  # 416x640 scaled to 312x480, centred: black bars left and right
    assert portrait[:, :150].max() < 30 and portrait[:, -150:].max() < 30 and portrait[:, 170:470].max() > 200
    sizes = [json.loads(line)["resolution_wh"] for line in events.read_text().splitlines()]
    assert sizes == [[640, 480], [416, 640], [300, 300], [1280, 720]]  # detections are in each photo's pixels


@pytest.mark.parametrize(("name", "audio_codec"), [("ad.mp4", "aac"), ("ad.mov", "aac"), ("ad.mkv", "aac"),
                                                   ("ad.webm", "opus")])
def test_the_audio_description_track_fits_every_container(name: str, audio_codec: str, tmp_path: Path) -> None:
    from streamvis.sinks.narration_audio import mux_audio_description

    video = write_video(tmp_path / name, "libvpx-vp9" if name.endswith(".webm") else "libx264", 20)
    mux_audio_description(video, [(0.2, 1.5, "A person ahead.")])
    with av.open(str(video)) as container:
        assert container.streams.audio[0].codec_context.name == audio_codec
        assert sum(1 for _ in container.decode(video=0)) == 20
    with av.open(str(video)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0.5 * 48000  # the speech is there
    assert not list(tmp_path.glob("*.tmp*"))


def _read(path: Path, span: FrameSpan | None = None) -> list[tuple[int, float, bytes]]:
    return [(f.index, f.pts, f.image.tobytes()) for f in open_source(str(path), span=span)]


VIDEO_CASES = [c for c in CASES if c.frames is not None and "photos" not in c.name]


@pytest.mark.parametrize("case", VIDEO_CASES, ids=[c.name for c in VIDEO_CASES])
def test_a_video_read_in_spans_is_the_whole_read(case: Case, tmp_path: Path) -> None:
    """A chunk of a video (a `FrameSpan`: a seek and a frame range) yields the frames of a whole read, numbered
    and timed the same, however the container's timestamps lie."""
    path = case.make(tmp_path)
    whole = _read(path)
    media = index_media(str(path))
    assert media.frames == len(whole)
    cuts = sorted({0, len(whole) // 3, 2 * len(whole) // 3, len(whole)})
    parts = [_read(path, media.span(a, b)) for a, b in itertools.pairwise(cuts)]
    assert [frame for part in parts for frame in part] == whole


@pytest.mark.parametrize(("name", "options", "pts"), [
    ("walk.avi", {"g": "10", "bf": "3", "b-adapt": "0"}, None),  # B-frames, pts out of order
    ("walk.mp4", {"g": "10", "bf": "3"}, None),
    ("gaps.mkv", {"g": "10"}, lambda i: i + 3 * (i // 25)),  # variable frame rate
])
def test_spans_seek_to_keyframes_on_real_footage(name: str, options: dict[str, str], pts: Any,
                                                 person_video: Path, tmp_path: Path) -> None:
    clip = cut_clip(person_video, tmp_path / name, 60, options, pts)
    whole = _read(clip)
    media = index_media(str(clip))
    assert media.keyframes == [0, 10, 20, 30, 40, 50]
    # spans that start between keyframes (as Ray's overlaps do) decode from the keyframe before them
    spans = [media.span(0, 12), media.span(8, 33), media.span(31, 60)]
    assert [s.seek_frame for s in spans] == [0, 0, 30]
    assert [_read(clip, span) for span in spans] == [whole[:12], whole[8:33], whole[31:]]


def test_a_span_whose_seek_lands_elsewhere_counts_packets_instead(person_video: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    clip = cut_clip(person_video, tmp_path / "walk.avi", 40, {"g": "10", "bf": "3"})
    caplog.set_level(logging.INFO)
    whole = _read(clip)
    wrong = FrameSpan(25, 40, 20, (21, 20, 1))  # a key no packet has (a file rewritten since it was indexed)
    assert _read(clip, wrong) == whole[25:]
    assert "the seek to frame 20 missed" in caplog.text


def test_only_files_take_spans() -> None:
    with pytest.raises(SourceError, match="a frame span needs a video file"):
        open_source("synthetic:?frames=10", span=FrameSpan(2, 5))
