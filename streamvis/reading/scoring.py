"""Text reading scored against labelled images: word recall and precision, character error rate, by text height.

Labels are ICDAR 2015 / Total-Text-style text files beside the images (`img_1.jpg` with `img_1.txt` or
`gt_img_1.txt`), a line per text: `x1,y1,x2,y2,x3,y3,x4,y4,transcription`, `###` for text nobody can read (left out
of the scores; a reading over it counts neither way). A labelled text is matched by the readings that overlap it
(half of its area, or half of theirs: a model reads lines where labels may hold words, and the other way round).
Words are compared by their letters and digits, case ignored; a label written without spaces is read right by
the same letters split into words. The character error rate is over the labelled lines read as one line (box IoU
at least 0.5): the Levenshtein distance (rapidfuzz) of their letters and digits, over the label's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import supervision as sv

from streamvis.errors import ConfigError
from streamvis.reading.model import RawText

IGNORED = "###"
#: text height (px, the label's box) buckets: a listener's "can it read small print"
HEIGHT_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<16px", 0, 16), ("16-32px", 16, 32), ("32-64px", 32, 64), (">=64px", 64, float("inf")))


@dataclass(frozen=True, slots=True)
class LabelledText:
    polygon_xy: np.ndarray  # (4, 2)
    text: str

    @property
    def ignored(self) -> bool:
        return self.text.strip() == IGNORED or not words(self.text)


def words(text: str) -> list[str]:
    """The words of `text` as compared: letters and digits only, upper case; empty tokens dropped."""
    out = []
    for token in text.split():
        kept = "".join(ch for ch in token.upper() if ch.isalnum())
        if kept:
            out.append(kept)
    return out


def read_labels(path: Path) -> list[LabelledText]:
    """An ICDAR-style label file (UTF-8, with or without a BOM); raises `ConfigError` naming a bad line."""
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            coords = np.array([float(v) for v in parts[:8]], np.float32).reshape(4, 2)
        except ValueError:
            raise ConfigError(f"{path}:{number}: expected x1,y1,x2,y2,x3,y3,x4,y4,text, got '{line[:60]}'") from None
        if len(parts) < 9:
            raise ConfigError(f"{path}:{number}: no transcription after the 8 coordinates")
        labels.append(LabelledText(coords, ",".join(parts[8:]).strip()))
    return labels


def label_file(image: Path) -> Path | None:
    for candidate in (image.with_suffix(".txt"), image.with_name(f"gt_{image.stem}.txt")):
        if candidate.is_file():
            return candidate
    return None


def _box(polygon_xy: np.ndarray) -> tuple[float, float, float, float]:
    return (float(polygon_xy[:, 0].min()), float(polygon_xy[:, 1].min()), float(polygon_xy[:, 0].max()),
            float(polygon_xy[:, 1].max()))


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return False
    inter = w * h
    area_a = max(1e-6, (a[2] - a[0]) * (a[3] - a[1]))
    area_b = max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
    return inter >= 0.5 * area_a or inter >= 0.5 * area_b


@dataclass
class TextScore:
    """Counts over one or many images; the rates are properties."""

    label_words: int = 0
    found_words: int = 0  # label words read right
    read_words: int = 0  # words read (over no ignored text)
    right_words: int = 0  # ... of which a label holds
    label_chars: int = 0  # of the labels read as one line
    char_errors: int = 0
    by_height: dict[str, list[int]] = field(default_factory=lambda: {b[0]: [0, 0] for b in HEIGHT_BUCKETS})

    def add(self, other: TextScore) -> None:
        self.label_words += other.label_words
        self.found_words += other.found_words
        self.read_words += other.read_words
        self.right_words += other.right_words
        self.label_chars += other.label_chars
        self.char_errors += other.char_errors
        for name, (total, found) in other.by_height.items():
            self.by_height[name][0] += total
            self.by_height[name][1] += found

    @property
    def recall(self) -> float:
        return self.found_words / self.label_words if self.label_words else 0.0

    @property
    def precision(self) -> float:
        return self.right_words / self.read_words if self.read_words else 0.0

    @property
    def cer(self) -> float:
        return self.char_errors / self.label_chars if self.label_chars else 0.0

    def metrics(self) -> dict[str, float]:
        out = {"word_recall": self.recall, "word_precision": self.precision, "CER": self.cer,
               "words": float(self.label_words)}
        for name, (total, found) in self.by_height.items():
            out[f"recall_{name}"] = found / total if total else float("nan")
        return out


def _runs(tokens: list[str], longest: int = 6) -> list[tuple[int, int, str]]:
    """Every run of up to `longest` consecutive tokens, joined: a label written without spaces
    ("KOREANRESTAURANT", as some sets are) is read right as "KOREAN RESTAURANT"."""
    return [(i, j, "".join(tokens[i:j])) for i in range(len(tokens)) for j in range(i + 1, min(len(tokens), i + longest)
                                                                                    + 1)]


def _matched_in_order(readings: list[RawText], boxes: list[tuple[float, float, float, float]],
                      indices: list[int]) -> list[str]:
    """The words of these readings, top to bottom, left to right."""
    ordered = sorted(indices, key=lambda j: (round(boxes[j][1] / 10), boxes[j][0]))
    return [w for i in ordered for w in words(readings[i].text)]


def score_image(labels: list[LabelledText], readings: list[RawText]) -> TextScore:
    """One image's readings against its labels."""
    from rapidfuzz.distance import Levenshtein

    score = TextScore()
    read_boxes = [_box(r.polygon_xy) for r in readings]
    over_label: list[set[int]] = [set() for _ in readings]  # the labels each reading overlaps
    for index, label in enumerate(labels):
        box = _box(label.polygon_xy)
        matched = [i for i, b in enumerate(read_boxes) if _overlaps(box, b)]
        for i in matched:
            over_label[i].add(index)
        if label.ignored:
            continue
        wanted = words(label.text)
        said = _matched_in_order(readings, read_boxes, matched)
        got = Counter(joined for _, _, joined in _runs(said))
        found = sum(min(n, got[w]) for w, n in Counter(wanted).items())
        score.label_words += len(wanted)
        score.found_words += found
        height = box[3] - box[1]
        bucket = next(name for name, low, high in HEIGHT_BUCKETS if low <= height < high)
        score.by_height[bucket][0] += len(wanted)
        score.by_height[bucket][1] += found
        ious = sv.box_iou_batch(np.array([box]), np.array([read_boxes[i] for i in matched])).reshape(-1) \
            if matched else np.zeros(0)
        if len(ious) and ious.max() >= 0.5:  # the same line, read as one: its character errors
            best = matched[int(ious.argmax())]
            letters, read = "".join(wanted), "".join(words(readings[best].text))  # spaces aside: sets differ
            score.label_chars += len(letters)
            score.char_errors += min(len(letters), Levenshtein.distance(letters, read))
    for i, reading in enumerate(readings):
        on = over_label[i]
        if on and all(labels[k].ignored for k in on):
            continue  # read over text nobody could label: neither right nor wrong
        said = words(reading.text)
        labelled = {w for k in on if not labels[k].ignored for w in words(labels[k].text)}
        right = [False] * len(said)
        for start, end, joined in _runs(said):
            if joined in labelled:
                right[start:end] = [True] * (end - start)
        score.read_words += len(said)
        score.right_words += sum(right)
    return score
