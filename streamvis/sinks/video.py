"""The annotated video file: one output frame per input frame at its pts, in the container its name asks for
(`.mp4`, `.mov`, `.mkv`: H.264; `.webm`: VP9; see `containers`). Frames of another size than the first (a folder
of photos) are letterboxed into the first frame's size."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streamvis.config import OutputConfig
from streamvis.errors import OutputError, reason
from streamvis.frame import Result
from streamvis.sinks.audio import AudioCopier
from streamvis.sinks.containers import output_format

log = logging.getLogger(__name__)

DEFAULT_TIME_BASE = Fraction(1, 90000)


def letterbox(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `size_wh` with its aspect kept, centred on black."""
    width, height = size_wh
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    canvas[y:y + new_h, x:x + new_w] = resized
    return canvas


class VideoWriter:
    """A sink writing each result's annotated image at its pts. Opens on the first frame (it fixes the size);
    `close()` always leaves a playable file. The container and codec follow the file name (`output_format`).

    `pts_origin` is the stream time written as 0 s: 0 keeps the input's own timing (offline), None takes the
    first frame's pts (a live recording that starts mid-stream)."""

    def __init__(self, path: Path, fps: float | None, config: OutputConfig | None = None,
                 time_base: Fraction | None = None, audio_path: str | None = None,
                 pts_origin: float | None = 0.0) -> None:
        self.path = path
        self.format = output_format(path)
        self.fps = fps or 30.0
        self.config = config or OutputConfig()
        self.time_base = time_base or DEFAULT_TIME_BASE
        self.audio_path = audio_path if self.config.copy_audio else None
        self.pts_origin = pts_origin
        self.frames = 0
        self.last_pts: float | None = None
        self._last_ticks = -1
        self._container: Any = None
        self._video: Any = None
        self._audio: AudioCopier | None = None
        self._size_wh: tuple[int, int] | None = None

    def _open(self, width: int, height: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), "w", format=self.format.muxer, options=self.format.options)
        except (OSError, av.error.FFmpegError) as exc:
            raise OutputError(f"cannot write {self.path}: {reason(exc)}") from exc
        rate = Fraction(self.fps).limit_denominator(1001)
        video = self._container.add_stream(self.format.video_codec, rate=rate)
        # yuv420p needs even sizes: odd ones are padded by one black row/column.
        self._size_wh = (width + width % 2, height + height % 2)
        video.width, video.height = self._size_wh
        video.pix_fmt = "yuv420p"
        video.time_base = self.time_base
        video.codec_context.time_base = self.time_base
        if self.format.video_codec == "libx264":
            video.options = {"crf": str(self.config.crf), "preset": self.config.preset}
        else:  # VP9 at constant quality; realtime speeds, row threading
            video.bit_rate = 0
            video.options = {"crf": str(self.config.crf + 8), "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        if self.config.encoder_threads:
            video.codec_context.thread_count = self.config.encoder_threads
        self._video = video
        if self.audio_path:
            try:
                self._audio = AudioCopier(self.audio_path, self._container, self.format)
            except (av.error.FFmpegError, ValueError, IndexError) as exc:
                log.warning("%s: audio not copied (%s)", self.path.name, exc)
                self._audio = None

    def _fit(self, image: np.ndarray) -> np.ndarray:
        assert self._size_wh is not None
        width, height = self._size_wh
        if image.shape[1] == width and image.shape[0] == height:
            return image
        if 0 <= width - image.shape[1] <= 1 and 0 <= height - image.shape[0] <= 1:  # odd size: pad to even
            return cv2.copyMakeBorder(image, 0, height - image.shape[0], 0, width - image.shape[1],
                                      cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return letterbox(image, (width, height))  # the source changed size (a folder of photos, a camera)

    def write(self, result: Result) -> None:
        """Encode the annotated frame at its pts (nudged forward one tick if not after the previous one)."""
        assert result.annotated is not None, "the pipeline annotates every frame"
        image_bgr = result.annotated
        if self.pts_origin is None:
            self.pts_origin = result.frame.pts
        pts = result.frame.pts - self.pts_origin
        if self._container is None:
            self._open(image_bgr.shape[1], image_bgr.shape[0])
        ticks = round(pts / self.time_base)
        if ticks <= self._last_ticks:
            ticks = self._last_ticks + 1
        self._last_ticks = ticks
        frame = av.VideoFrame.from_ndarray(self._fit(image_bgr), format="bgr24")
        frame.pts = ticks
        frame.time_base = self.time_base
        if self._audio is not None:
            self._audio.feed_until(pts)
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        self.last_pts = pts

    def close(self, complete: bool = True) -> None:
        """Flush and finalise; an incomplete run keeps audio only up to the last video frame."""
        if self._container is None:
            return
        try:
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                end = None if complete else (self.last_pts or 0.0) + 1 / self.fps
                self._audio.close(end)
        finally:
            self._container.close()
            self._container = None
