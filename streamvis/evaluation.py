"""`streamvis eval`: labelled media in, metrics out, for one or several pipeline settings side by side.

Tracking: the clip is a MOTChallenge sequence folder (`seqinfo.ini`, `img1/`, `gt/gt.txt`) or any video with a
MOTChallenge `gt.txt` in its own pixels. Each setting (`Variant`: a name and `--set` overrides) runs the offline
pipeline over every frame, as `process` would; the tracks of the scored class are written in the MOTChallenge
format and scored against the ground truth by `trackers.eval` (TrackEval's matching: the pedestrian class scored,
distractor classes and ignored rows left out; IoU `iou` for CLEAR and identity, HOTA over its thresholds).
Detection: a folder of images with YOLO labels (`images/[split/]*.jpg`, `labels/[split/]*.txt`: class cx cy w h,
relative; coco128's layout) is scored by pycocotools' COCO box mAP, the detector's class ids against the labels'.
Text reading: a folder of images with ICDAR-style text labels beside them (`img_1.jpg`, `img_1.txt` or
`gt_img_1.txt`) is read by the configured reader and scored by `reading.scoring` (word recall and precision,
character error rate, recall by text height).
Hand-written metrics would drift from the field's: the libraries made for them do the scoring (the text scores,
for which none is kept on PyPI, count words and take rapidfuzz's edit distance).
"""

from __future__ import annotations

import configparser
import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from streamvis.config import load_pipeline
from streamvis.detection import Detector
from streamvis.errors import ConfigError, SourceError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, slots=True)
class Labelled:
    """A clip and its ground truth: `source` is what `open_source` reads (a video, or an image folder's glob)."""

    name: str
    source: str
    gt: Path
    fps: float | None  # a sequence folder's frame rate (seqinfo.ini); None: the video's own
    size_wh: tuple[int, int] | None  # the frames' size the labels are in, when the folder says


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    overrides: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Scored:
    sequence: str  # the clip's or the image folder's name
    variant: str
    metrics: dict[str, float]
    frames: int  # frames (or images) run
    tracks_file: Path | None = None  # the tracks scored (MOTChallenge lines), for a clip

    def to_json(self) -> dict[str, object]:
        return {"sequence": self.sequence, "variant": self.variant, "frames": self.frames,
                "tracks_file": None if self.tracks_file is None else str(self.tracks_file), "metrics": self.metrics}


TRACK_COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "CLR_FP", "CLR_FN", "DetA", "AssA")
COUNT_COLUMNS = frozenset({"IDSW", "CLR_FP", "CLR_FN", "words"})  # shown as whole numbers


def parse_variant(text: str) -> Variant:
    """`NAME=key=value,key=value` (or `NAME` alone: the base settings under that name)."""
    name, _, rest = text.partition("=")
    if not name or "," in name:
        raise ConfigError(f"--variant: expected NAME=key=value[,key=value...], got '{text}'")
    overrides = [part for part in rest.split(",") if part] if rest else []
    if any("=" not in part for part in overrides):
        raise ConfigError(f"--variant {name}: each override is key=value, got '{rest}'")
    return Variant(name, overrides)


def find_labelled(path: Path, gt: Path | None) -> Labelled:
    """A MOTChallenge sequence folder, or a video with `gt`; raises `ConfigError` naming what is missing."""
    if path.is_dir():
        info = configparser.ConfigParser()
        if not info.read(path / "seqinfo.ini"):
            raise ConfigError(f"{path}: a sequence folder needs seqinfo.ini (MOTChallenge layout: seqinfo.ini, "
                              "img1/, gt/gt.txt)")
        seq = info["Sequence"]
        images = path / seq.get("imDir", "img1")
        suffix = seq.get("imExt", ".jpg")
        if not any(images.glob(f"*{suffix}")):
            raise ConfigError(f"{path}: no {suffix} frames in {images}")
        labels = gt or path / "gt" / "gt.txt"
        if not labels.is_file():
            raise ConfigError(f"{path}: no ground truth at {labels} (give --gt)")
        size = (int(seq["imWidth"]), int(seq["imHeight"])) if "imWidth" in seq and "imHeight" in seq else None
        return Labelled(seq.get("name", path.name), str(images / f"*{suffix}"), labels,
                        float(seq.get("frameRate", "30")), size)
    if gt is None:
        raise ConfigError(f"{path}: a video needs --gt gt.txt (MOTChallenge lines in the video's own pixels)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such video or sequence folder")
    if not gt.is_file():
        raise ConfigError(f"--gt {gt}: no such file")
    return Labelled(path.stem, str(path), gt, None, None)


def check_labels_fit(gt: Path, size_wh: tuple[int, int]) -> None:
    """The labels are in the frames' pixels: a box reaching far past the frame means a rescaled copy."""
    rows = np.loadtxt(gt, delimiter=",", ndmin=2)
    if not len(rows):
        raise ConfigError(f"{gt}: no ground-truth rows")
    right = float((rows[:, 2] + rows[:, 4]).max())
    bottom = float((rows[:, 3] + rows[:, 5]).max())
    width, height = size_wh
    if right > 1.5 * width or bottom > 1.5 * height:
        raise ConfigError(f"{gt}: boxes reach x={right:.0f}, y={bottom:.0f} but the frames are {width}x{height}: "
                          "the labels must be in the clip's own pixels (a rescaled copy needs its boxes rescaled)")


def run_variant(clip: Labelled, variant: Variant, pipeline: str | None, base: list[str], out_dir: Path,
                class_name: str, models_dir: str | Path | None) -> tuple[Path, int]:
    """The offline pipeline over every frame; the scored class's tracks as MOTChallenge lines (1-based frames
    and ids, boxes x, y, w, h)."""
    from streamvis.pipeline.loading import load_models
    from streamvis.pipeline.step import Pipeline
    from streamvis.sources import open_source

    overrides = [*base, *variant.overrides]
    if clip.fps is not None:
        overrides.append(f"source.image_fps={clip.fps:g}")
    config = load_pipeline(pipeline, overrides)
    source = open_source(clip.source, config.source)
    try:
        runner = Pipeline(config, load_models(config, models_dir), source.fps, annotate=False)
        lines: list[str] = []
        frames = 0
        for frame in source:
            if frames == 0:
                check_labels_fit(clip.gt, clip.size_wh or frame.resolution_wh)
            frames += 1
            detections = runner.process(frame).detections
            if detections.tracker_id is None or not len(detections):
                continue
            names = detections.data.get("class_name")
            scores = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            for i, (x1, y1, x2, y2) in enumerate(detections.xyxy.tolist()):
                track = int(detections.tracker_id[i])
                if track < 0 or (names is not None and str(names[i]) != class_name):
                    continue
                lines.append(f"{frame.index + 1},{track + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                             f"{float(scores[i]):.4f},-1,-1,-1")
    finally:
        source.close()
    if not frames:
        raise SourceError(f"{clip.source}: no frames")
    tracks = out_dir / f"{clip.name}.{variant.name}.txt"
    tracks.write_text("\n".join(lines) + ("\n" if lines else ""))
    return tracks, frames


def score(gt: Path, tracks: Path, iou: float) -> dict[str, float]:
    """HOTA, CLEAR (MOTA, MOTP, ...) and identity (IDF1, ...) of `tracks` against `gt`, by `trackers.eval`."""
    from trackers.eval import evaluate_mot_sequence

    if not tracks.read_text().strip():  # nothing tracked: every ground-truth box is missed
        tracks.write_text("1,1,-10,-10,1,1,0.0,-1,-1,-1\n")  # one box off the frame, so the file parses
    result = evaluate_mot_sequence(gt, tracks, metrics=["CLEAR", "HOTA", "Identity"], threshold=iou)
    metrics: dict[str, float] = {}
    for family in (result.HOTA, result.CLEAR, result.Identity):
        if family is not None:
            metrics.update({k: float(v) for k, v in family.to_dict().items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return metrics


COCO_STATS = ("mAP", "mAP50", "mAP75", "AP_small", "AP_medium", "AP_large")


def find_image_dataset(path: Path, split: str | None = None) -> tuple[Path, Path] | None:
    """(images folder, labels folder) of a YOLO-format dataset at `path`, or None when it is not one."""
    images, labels = path / "images", path / "labels"
    if not images.is_dir() or not labels.is_dir():
        return None
    if split is not None:
        images, labels = images / split, labels / split
    elif not any(images.glob("*.jpg")):
        splits = sorted(d.name for d in images.iterdir() if d.is_dir())
        if not splits:
            raise ConfigError(f"{path}: no .jpg images under images/")
        images, labels = images / splits[0], labels / splits[0]
    if not any(images.glob("*.jpg")):
        raise ConfigError(f"{images}: no .jpg images")
    return images, labels


def detection_map(images_dir: Path, labels_dir: Path, detector: Detector) -> dict[str, float]:
    """COCO box AP (pycocotools) of `detector` on `images_dir/*.jpg` against the YOLO labels in `labels_dir`
    (class cx cy w h, relative; an image without a label file holds no object): mAP@0.5:0.95, @0.5, @0.75 and by
    size."""
    import cv2
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    results: list[dict[str, object]] = []
    for image_id, path in enumerate(sorted(images_dir.glob("*.jpg"))):
        image = cv2.imread(str(path))
        if image is None:
            raise SourceError(f"{path}: not an image OpenCV can read")
        height, width = image.shape[:2]
        images.append({"id": image_id, "width": width, "height": height})
        label = labels_dir / f"{path.stem}.txt"
        for line in label.read_text().splitlines() if label.exists() else []:
            if not line.strip():
                continue
            cls, cx, cy, w, h = (float(v) for v in line.split()[:5])
            box_w, box_h = w * width, h * height
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls),
                                "bbox": [cx * width - box_w / 2, cy * height - box_h / 2, box_w, box_h],
                                "area": box_w * box_h, "iscrowd": 0})
        found = detector.detect(image)
        scores = found.confidence if found.confidence is not None else np.ones(len(found))
        class_ids = found.class_id if found.class_id is not None else np.zeros(len(found), int)
        for (x1, y1, x2, y2), score, cls in zip(found.xyxy, scores, class_ids, strict=True):
            results.append({"image_id": image_id, "category_id": int(cls),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
    if not results:
        return dict.fromkeys(COCO_STATS, 0.0)
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": i} for i in range(len(detector.class_names))]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(COCO_STATS, evaluation.stats[:6], strict=True)}


TEXT_COLUMNS = ("words", "word_recall", "word_precision", "CER", "recall_<16px", "recall_16-32px", "recall_32-64px",
                "recall_>=64px", "ms_per_image")


def find_text_dataset(path: Path) -> list[tuple[Path, Path]] | None:
    """(image, label file) pairs of an ICDAR-style text folder, or None when `path` holds no labelled image."""
    from streamvis.reading.scoring import label_file

    pairs = []
    for image in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        labels = label_file(image)
        if labels is not None:
            pairs.append((image, labels))
    return pairs or None


def evaluate_texts(name: str, pairs: list[tuple[Path, Path]], variants: list[Variant], pipeline: str | None,
                   base: list[str]) -> list[Scored]:
    """Every setting's text reader on the labelled images, whole images, scored against their labels."""
    import time

    import cv2

    from streamvis.config import RapidOcrReaderConfig
    from streamvis.extras import require
    from streamvis.reading.model import load_text_model
    from streamvis.reading.scoring import TextScore, read_labels, score_image

    require("streamvis eval on labelled text", "eval")
    rows = []
    for variant in variants:
        config = load_pipeline(pipeline, [*base, *variant.overrides]).reader
        if not isinstance(config, RapidOcrReaderConfig):
            raise ConfigError(f"variant {variant.name}: no text reader in this pipeline (use -p narrate, or --set "
                              "reader.type=rapidocr)")
        log.info("eval %s: reading with '%s' %s", name, variant.name, " ".join(variant.overrides))
        model = load_text_model(config)
        model.read(np.full((256, 256, 3), 255, np.uint8))  # warm: the first run's set-up is not a reading's time
        total, elapsed = TextScore(), 0.0
        for image_path, labels_path in pairs:
            image = cv2.imread(str(image_path))
            if image is None:
                raise SourceError(f"{image_path}: not an image OpenCV can read")
            start = time.perf_counter()
            readings = [r for r in model.read(image) if r.score >= config.min_score]
            elapsed += time.perf_counter() - start
            total.add(score_image(read_labels(labels_path), readings))
        metrics = total.metrics()
        metrics["ms_per_image"] = elapsed * 1e3 / len(pairs)
        rows.append(Scored(name, variant.name, metrics, len(pairs)))
    return rows


def evaluate_clip(clip: Labelled, variants: list[Variant], pipeline: str | None, base: list[str], out_dir: Path,
                  class_name: str, iou: float, models_dir: str | Path | None) -> list[Scored]:
    """Every setting tracked over the clip and scored against its labels."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in variants:
        log.info("eval %s: running '%s' %s", clip.name, variant.name, " ".join(variant.overrides))
        tracks, frames = run_variant(clip, variant, pipeline, base, out_dir, class_name, models_dir)
        rows.append(Scored(clip.name, variant.name, score(clip.gt, tracks, iou), frames, tracks))
    return rows


def evaluate_images(name: str, dataset: tuple[Path, Path], variants: list[Variant], pipeline: str | None,
                    base: list[str], models_dir: str | Path | None) -> list[Scored]:
    """Every setting's detector scored on the labelled images (COCO box AP)."""
    from streamvis.extras import require
    from streamvis.pipeline.loading import load_models

    require("streamvis eval on labelled images", "eval")
    images = len(list(dataset[0].glob("*.jpg")))
    rows = []
    for variant in variants:
        log.info("eval %s: detecting with '%s' %s", name, variant.name, " ".join(variant.overrides))
        detector = load_models(load_pipeline(pipeline, [*base, *variant.overrides]), models_dir).detector
        rows.append(Scored(name, variant.name, detection_map(*dataset, detector), images))
    return rows


def results_table(title: str, columns: tuple[str, ...], rows: list[Scored]) -> Table:
    """The settings side by side, one row each."""
    table = Table(title=title)
    for column in ("variant", *columns):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(row.variant, *("-" if np.isnan(row.metrics[c]) else str(int(row.metrics[c]))
                                     if c in COUNT_COLUMNS else f"{row.metrics[c]:.3f}" for c in columns))
    return table
