"""What a run puts in the index (a sink, like the video and JSONL writers): for each track, three views (its first,
its best: the surest detection at the largest size, and its last; with a segmenter's masks, the object alone on
grey), embedded when the track ends and averaged into one vector; and the whole frame every `scene_every_s`.
Tracks shorter than `min_track_s` are left out. A track ends when it has not been seen for `TRACK_ENDS_AFTER_S`,
or when the input ends; each ended track is written in its own transaction, so a killed run keeps every track that
ended before. Live (an index on the wall clock), a track is written as soon as it has been followed `min_track_s`
(its best view so far), so a search finds it while it is in view, and its row is replaced when it ends. With
alert sentences (`serve --alert`), that best view is checked against them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamvis.config import ClipEmbedderConfig
from streamvis.frame import Result
from streamvis.search.alerts import Alert, AlertRules
from streamvis.search.embedder import ImageTextEmbedder
from streamvis.search.index import MomentIndex, SceneMoment, TrackMoment

log = logging.getLogger(__name__)

TRACK_ENDS_AFTER_S = 2.0
VIEW_MAX_PX = 256  # views are kept at most this long on their longer side (the models see 224 or less)
SCENE_THUMB_WIDTH_PX = 320
BACKGROUND_GREY = 124  # what is not the object in a masked view: about the mean colour CLIP-style models expect


def _shrunk(image: np.ndarray, longest: int) -> np.ndarray:
    scale = longest / max(image.shape[:2])
    if scale >= 1:
        return image.copy()
    return cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


@dataclass
class _Track:
    first_s: float
    last_s: float
    classes: dict[str, int] = field(default_factory=dict)
    first: np.ndarray | None = None
    last: np.ndarray | None = None
    best: np.ndarray | None = None
    best_rank: float = -1.0
    best_score: float = 0.0
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    checked: bool = False  # against the alert sentences, once it was followed `min_track_s`


class MomentCollector:
    """One stream's moments into `index` (a sink: `write` per result, `close` at the end), timed by the index's
    clock. `video` is where they can be cut from (a video file, or a live recording's folder). Thumbnails go to
    `<thumbs_of>.thumbs/<stream>/`, named relative to `thumbs_of`'s folder (`thumbs_of`: the index, or the index a
    Ray task's part is merged into)."""

    def __init__(self, index: MomentIndex, embedder: ImageTextEmbedder, stream: str,
                 config: ClipEmbedderConfig, video: Path | None = None, source: str = "",
                 alerts: AlertRules | None = None, on_alert: Callable[[Alert], None] | None = None,
                 thumbs_of: Path | None = None) -> None:
        self.index, self.embedder, self.stream, self.config = index, embedder, stream, config
        self.alerts, self.on_alert = alerts, on_alert
        self.live = index.clock == "wall"  # timed by the wall clock; tracks searchable while they are in view
        # set by a live stream's latency budget (its narration step): scene keyframes at least this far apart
        self.min_gap_s = 0.0
        if video is not None:
            index.add_video(stream, video, source)  # what `streamvis search --export` cuts clips from
        home = thumbs_of or index.path
        self.thumbs_root = home.parent
        self.thumbs = home.with_name(home.name + ".thumbs") / stream
        self.thumbs.mkdir(parents=True, exist_ok=True)
        self._tracks: dict[int, _Track] = {}
        self._last_scene_s: float | None = None
        self.tracks_written = 0
        self.scenes_written = 0

    def write(self, result: Result) -> None:
        t = result.frame.decoded_wall_s if self.live else result.frame.pts  # the index's clock
        image = result.frame.image
        detections = result.detections
        height, width = image.shape[:2]
        if len(detections) and detections.tracker_id is not None:
            names = detections.data.get("class_name")
            scores = detections.confidence if detections.confidence is not None else np.ones(len(detections))
            for i, track_id in enumerate(detections.tracker_id.tolist()):
                if track_id < 0:
                    continue
                x1, y1, x2, y2 = (int(v) for v in np.clip(detections.xyxy[i], 0, [width, height, width, height]))
                if x2 - x1 < 8 or y2 - y1 < 8:
                    continue
                state = self._tracks.setdefault(track_id, _Track(t, t))
                state.last_s = t
                name = str(names[i]) if names is not None else "object"
                state.classes[name] = state.classes.get(name, 0) + 1
                crop = image[y1:y2, x1:x2]
                if detections.mask is not None:  # a segmenter's mask: the object alone, its background grey
                    inside = np.asarray(detections.mask[i])[y1:y2, x1:x2, None]
                    crop = np.where(inside, crop, np.uint8(BACKGROUND_GREY))
                view = _shrunk(crop, VIEW_MAX_PX)
                if state.first is None:
                    state.first = view
                state.last = view
                rank = float(scores[i]) * np.sqrt((x2 - x1) * (y2 - y1))
                if rank > state.best_rank:
                    state.best, state.best_rank, state.best_score = view, rank, float(scores[i])
                    state.best_box = (float(x1), float(y1), float(x2), float(y2))
        if self.live or self.alerts is not None:
            for key, state in self._tracks.items():
                if not state.checked and state.best is not None \
                        and state.last_s - state.first_s >= self.config.min_track_s:
                    self._followed(key, state, result.frame.pts)
        ended = [k for k, s in self._tracks.items() if t - s.last_s > TRACK_ENDS_AFTER_S]
        scenes: list[SceneMoment] = []
        if self._last_scene_s is None or t - self._last_scene_s >= max(self.config.scene_every_s,
                                                                       self.min_gap_s) - 1e-6:
            self._last_scene_s = t
            scenes.append(self._scene(image, t))
        self._flush(ended, scenes)

    def _followed(self, key: int, state: _Track, pts: float) -> None:
        """A track followed `min_track_s`: its best view so far is checked against the alert sentences and, live,
        indexed at once (found while it is still in view; its row is replaced when it ends)."""
        state.checked = True
        view = self.embedder.images([state.best])[0] if state.best is not None else None
        if view is None:
            return
        name = max(state.classes, key=lambda c: state.classes[c])
        if self.alerts is not None and self.on_alert is not None:
            for alert in self.alerts.check(self.stream, key, name, pts, view):
                self.on_alert(alert)
        if self.live:
            self.index.put_track(self._moment(key, state, view))

    def _moment(self, key: int, state: _Track, embedding: np.ndarray) -> TrackMoment:
        thumb = self.thumbs / f"track_{key}_{state.first_s:.3f}.jpg"  # ids start again in each run
        assert state.best is not None
        cv2.imwrite(str(thumb), state.best)
        return TrackMoment(self.stream, key, max(state.classes, key=lambda c: state.classes[c]), state.first_s,
                           state.last_s, state.best_score, state.best_box, str(thumb.relative_to(self.thumbs_root)),
                           embedding / max(float(np.linalg.norm(embedding)), 1e-12))

    def _scene(self, image: np.ndarray, t: float) -> SceneMoment:
        thumb = self.thumbs / f"scene_{t:.3f}.jpg"
        small = _shrunk(image, SCENE_THUMB_WIDTH_PX)
        cv2.imwrite(str(thumb), small)
        return SceneMoment(self.stream, t, str(thumb.relative_to(self.thumbs_root)),
                           self.embedder.images([image])[0])

    def _flush(self, ended: list[int], scenes: list[SceneMoment]) -> None:
        tracks: list[TrackMoment] = []
        for key in ended:
            state = self._tracks.pop(key)
            if state.last_s - state.first_s < self.config.min_track_s or state.best is None:
                continue
            views = [v for v in (state.first, state.best, state.last) if v is not None]
            tracks.append(self._moment(key, state, self.embedder.images(views).mean(axis=0)))
        if self.live:
            for moment in tracks:  # its row, written when it had been followed min_track_s, made whole
                self.index.put_track(moment)
            self.index.add([], scenes)
        else:
            self.index.add(tracks, scenes)
        self.tracks_written += len(tracks)
        self.scenes_written += len(scenes)

    def close(self) -> None:
        self._flush(list(self._tracks), [])
        log.info("index %s: %s: %d tracks, %d scene keyframes", self.index.path, self.stream, self.tracks_written,
                 self.scenes_written)
