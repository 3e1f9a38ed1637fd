"""Text read aloud, measured in one run: accuracy on public labelled images against the loop a user writes with
rapidocr, and end to end on a video with signs (what was said, when, at what cost), offline and live.

    .venv/bin/python benchmarks/reading.py [FOLDER ...] [--live] [--models-dir ../shared/models]

1. Accuracy: each folder of images with ICDAR-style text labels (default `tests/data/text`: ICDAR 2015 training
   images 1 and 2 and their labels, as mirrored in github.com/argman/EAST; two WildReceipt receipts and their
   labels, as mirrored in github.com/open-mmlab/mmocr) is read by streamvis's reader (`reader` of the narrate
   pipeline: PP-OCRv6 from the rapidocr wheel, text detector at most 960 px, readings under 0.75 dropped) and,
   as the baseline, by the loop a user writes (`RapidOCR()(image)`: rapidocr's defaults). Scored by
   `streamvis.reading.scoring` (word recall and precision, character error rate, recall by text height).
2. End to end: a sign video (the shared person video with real photographed text pasted in: "KOREAN RESTAURANT"
   from a WildReceipt receipt at 4 s on the left, "EXIT" from ICDAR 2015 image 2 at 8 s on the right) through
   `process -p narrate`: every utterance with its time, the delay from each sign's appearance to its being
   said, repeats, and the reader's cost (looks, model ms per minute of video), beside reading the whole frame
   at every look (`full_frame_every_s` = `every_s`), in the same run.
3. Live (`--live`): the same video served (`serve -p narrate`, played in real time) to a Python WebRTC viewer:
   the delay from the first frame with a sign reaching the viewer to the narration event that says it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
from results import save_table  # noqa: E402
from serving import free_port, get_json, stop  # noqa: E402

TEXT_DATA = ROOT / "tests" / "data" / "text"
PERSON_VIDEO = ROOT.parent / "shared" / "media" / "videos" / "intel_one-by-one-person-detection.mp4"
# (label, image, crop xyxy in it, scale, top-left where it goes as a share of the frame, from which second)
SIGNS = (("KOREAN RESTAURANT", TEXT_DATA / "wildreceipt_2.jpeg", (95, 17, 238, 37), 2.5, (0.04, 0.08), 4.0),
         ("EXIT", TEXT_DATA / "icdar2015_img_2.jpg", (596, 168, 641, 202), 2.5, (0.80, 0.10), 8.0))
SAID_WITHIN_S = 2.0  # the target: new text in front of a live camera spoken within 2 s


def sign_video(path: Path, seconds: float = 12.0, source: Path = PERSON_VIDEO) -> Path:
    """The first `seconds` of `source` with the real text crops of `SIGNS` pasted in from their second on."""
    patches = []
    for _, image_path, (x1, y1, x2, y2), scale, _, _ in SIGNS:
        image = cv2.imread(str(image_path))
        if image is None:
            raise SystemExit(f"{image_path}: cannot read")
        crop = image[y1:y2, x1:x2]
        patches.append(cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC))
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        rate = stream.average_rate
        out = dst.add_stream("libx264", rate=rate)
        out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
        out.options = {"preset": "ultrafast", "crf": "18"}
        for i, frame in enumerate(src.decode(stream)):
            t = i / float(rate)
            if t >= seconds:
                break
            image = frame.to_ndarray(format="bgr24")
            for patch, (_, _, _, _, (left, top), from_s) in zip(patches, SIGNS, strict=True):
                if t >= from_s:
                    x, y = int(left * image.shape[1]), int(top * image.shape[0])
                    h, w = min(patch.shape[0], image.shape[0] - y), min(patch.shape[1], image.shape[1] - x)
                    image[y:y + h, x:x + w] = patch[:h, :w]
            for packet in out.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return path


# -- 1. accuracy -------------------------------------------------------------------------------------------------
def accuracy(folder: Path) -> list[tuple[str, dict[str, float]]]:
    from rapidocr import RapidOCR

    from streamvis.config import RapidOcrReaderConfig, load_pipeline
    from streamvis.evaluation import find_text_dataset
    from streamvis.reading.model import RawText, load_text_model
    from streamvis.reading.scoring import TextScore, read_labels, score_image

    pairs = find_text_dataset(folder)
    if not pairs:
        raise SystemExit(f"{folder}: no images with ICDAR-style labels")
    config = load_pipeline("narrate").reader
    assert isinstance(config, RapidOcrReaderConfig)
    ours = load_text_model(config)
    users = RapidOCR(params={"Global.log_level": "error"})

    def user_loop(image: np.ndarray) -> list[RawText]:
        output: Any = users(image)
        if output.boxes is None:
            return []
        return [RawText(np.asarray(b, np.float32).reshape(4, 2), str(t), float(s))
                for b, t, s in zip(output.boxes, output.txts, output.scores, strict=True)]

    rows = []
    for name, read in (("user's loop: RapidOCR()(image)", user_loop),
                       ("streamvis reader (narrate)", lambda im: [r for r in ours.read(im)
                                                                  if r.score >= config.min_score])):
        total, elapsed = TextScore(), []
        for image_path, labels in pairs:
            image = cv2.imread(str(image_path))
            read(image)  # warm
            start = time.perf_counter()
            found = read(image)
            elapsed.append(time.perf_counter() - start)
            total.add(score_image(read_labels(labels), found))
        metrics = total.metrics()
        metrics["ms_per_image"] = statistics.median(elapsed) * 1e3
        rows.append((name, metrics))
    return rows


# -- 2. end to end, offline ---------------------------------------------------------------------------------------
def end_to_end(video: Path, models_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """The narrate pipeline over every frame, as `process` steps it (encoding aside)."""
    from streamvis.config import load_pipeline
    from streamvis.pipeline.loading import load_models
    from streamvis.pipeline.step import Pipeline
    from streamvis.sources import open_source

    config = load_pipeline("narrate", overrides)
    source = open_source(str(video), config.source)
    pipeline = Pipeline(config, load_models(config, models_dir), source.fps, annotate=False)
    utterances: list[tuple[float, str]] = []
    frames, looks, read_ms = 0, 0, 0.0
    start = time.perf_counter()
    try:
        for frame in source:
            result = pipeline.process(frame)
            frames += 1
            if "read" in result.timings_ms:
                looks += 1
                read_ms += result.timings_ms["read"]
            if result.description is not None:
                utterances.append((frame.pts, result.description.text))
    finally:
        source.close()
    wall_s = time.perf_counter() - start
    delays = {}
    for label, *_, from_s in SIGNS:
        at = [t for t, text in utterances if label.lower() in text.lower()]
        delays[label] = (at[0] - from_s) if at else None
    texts = [text for _, text in utterances]
    return {"utterances": utterances, "delays": delays, "repeats": len(texts) - len(set(texts)), "frames": frames,
            "fps": source.fps or 10.0, "looks": looks, "read_ms": read_ms, "wall_s": wall_s}


# -- 3. live ------------------------------------------------------------------------------------------------------
def live(video: Path, models_dir: Path) -> dict[str, float | None]:
    from streamvis_client import watch

    from streamvis.server.aiortc_compat import use_loopback_ice

    use_loopback_ice(only=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "streamvis", "serve", "--source", str(video), "--port", str(port),
                               "--models-dir", str(models_dir), "-p", "narrate"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[str, float] = {}  # event -> monotonic time it reached the viewer

    def on_message(message: dict[str, Any]) -> None:
        now = time.monotonic()
        if message.get("type") == "frame":
            for label, *_, from_s in SIGNS:
                if message.get("pts", 0.0) >= from_s:
                    seen.setdefault(f"shown:{label}", now)
        elif message.get("type") == "narration":
            for label, *_ in SIGNS:
                if label.lower() in str(message.get("text", "")).lower():
                    seen.setdefault(f"said:{label}", now)

    try:
        stream = video.stem
        for _ in range(240):
            try:
                if get_json(url + "/healthz")["streams"].get(stream) == "live":
                    break
            except OSError:
                pass
            time.sleep(0.25)
        asyncio.run(watch(url, stream, frames=10**6, timeout_s=max(s[-1] for s in SIGNS) + 6, on_message=on_message,
                          keep_messages=False))
    finally:
        stop(server, timeout_s=15)
    return {label: (seen[f"said:{label}"] - seen[f"shown:{label}"])
            if f"said:{label}" in seen and f"shown:{label}" in seen else None for label, *_ in SIGNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[TEXT_DATA])
    parser.add_argument("--models-dir", type=Path, default=ROOT.parent / "shared" / "models")
    parser.add_argument("--live", action="store_true", help="also serve the sign video to a WebRTC viewer")
    args = parser.parse_args()
    console = Console(width=200)

    table = Table(title="Text read on public labelled images (same images, same run)")
    for column in ("folder", "reader", "words", "word recall", "word precision", "CER", "recall <16px",
                   "16-32px", "32-64px", ">=64px", "ms / image"):
        table.add_column(column, justify="left" if column in ("folder", "reader") else "right")
    for folder in args.folders:
        for name, m in accuracy(folder):
            table.add_row(folder.name, name, str(int(m["words"])), f"{m['word_recall']:.3f}",
                          f"{m['word_precision']:.3f}", f"{m['CER']:.3f}",
                          *("-" if np.isnan(m[f"recall_{b}"]) else f"{m[f'recall_{b}']:.2f}"
                            for b in ("<16px", "16-32px", "32-64px", ">=64px")), f"{m['ms_per_image']:.0f}")
    console.print(table)
    save_table("reading_accuracy", table)

    with tempfile.TemporaryDirectory(prefix="streamvis-reading-") as tmp:
        work = Path(tmp)
        video = sign_video(work / "signs.mp4")
        runs = {"narrate (looks where it changed)": end_to_end(video, args.models_dir, []),
                "whole frame at every look": end_to_end(video, args.models_dir, ["reader.full_frame_every_s=1"])}
        cost = Table(title="End to end: the sign video through process -p narrate (12 s, 10 fps, 768x432)")
        for column in ("setting", *(f"'{s[0]}' said after (s)" for s in SIGNS), "repeats", "looks",
                       "reader ms / min of video", "wall s"):
            cost.add_column(column, justify="left" if column == "setting" else "right")
        for name, run in runs.items():
            minutes = run["frames"] / run["fps"] / 60
            cost.add_row(name, *("never" if run["delays"][s[0]] is None else f"{run['delays'][s[0]]:.1f}"
                                 for s in SIGNS), str(run["repeats"]), str(run["looks"]),
                         f"{run['read_ms'] / minutes:.0f}", f"{run['wall_s']:.1f}")
        console.print(cost)
        save_table("reading_end_to_end", cost)
        transcript = Table(title="What was said (narrate, the sign video)")
        transcript.add_column("t (s)", justify="right")
        transcript.add_column("utterance")
        for t, text in runs["narrate (looks where it changed)"]["utterances"]:
            transcript.add_row(f"{t:.1f}", text)
        console.print(transcript)
        save_table("reading_transcript", transcript)
        if args.live:
            delays = live(video, args.models_dir)
            table = Table(title=f"Live (serve -p narrate, one WebRTC viewer): sign shown -> said, target "
                                f"{SAID_WITHIN_S:g} s")
            table.add_column("sign")
            table.add_column("said after (s)", justify="right")
            for label, delay in delays.items():
                table.add_row(label, "never" if delay is None else f"{delay:.2f}")
            console.print(table)
            save_table("reading_live", table)


if __name__ == "__main__":
    main()
