"""Recording a live stream (`serve --record DIR`): an MP4 and a JSONL per stream, rolled over every
`segment_s` seconds of stream time, written in a thread of their own so that a slow disk never holds up the
live pipeline (frames the recorder cannot keep up with are dropped and counted as `record` drops)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from streamvis.config import OutputConfig
from streamvis.errors import OutputError
from streamvis.frame import Result
from streamvis.serialize import result_to_json
from streamvis.sinks import RECENT_SEGMENTS, Sink
from streamvis.sinks.events import EventsWriter
from streamvis.sinks.video import VideoWriter

log = logging.getLogger(__name__)

_END = object()


class SegmentedRecorder:
    """`DIR/<stream>/<stream>-<UTC start>.mp4` (+ `.jsonl`), a new pair every `segment_s` of stream time. Each MP4
    starts at 0 s and plays on its own; each JSONL record keeps the stream's frame index and pts, plus `video_pts`
    (the frame's time in its segment's video) and `wall_s` (when it was decoded, Unix time), as a copied recording's
    do."""

    def __init__(self, folder: Path, stream_id: str, segment_s: float, output: OutputConfig | None = None,
                 fps: float | None = None) -> None:
        if segment_s <= 0:
            raise ValueError(f"segment_s must be positive, got {segment_s}")
        self.folder = folder / stream_id
        self.stream_id = stream_id
        self.segment_s = segment_s
        self.output = output or OutputConfig(copy_audio=False)
        self.fps = fps
        self.segments: deque[Path] = deque(maxlen=RECENT_SEGMENTS)  # the newest segments written
        self._video: VideoWriter | None = None
        self._events: EventsWriter | None = None
        self._start_pts = 0.0

    def _roll(self, pts: float) -> None:
        self._close_segment()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        stem, n = f"{self.stream_id}-{stamp}", 2
        while (self.folder / f"{stem}.mp4").exists():
            stem, n = f"{self.stream_id}-{stamp}-{n}", n + 1
        path = self.folder / f"{stem}.mp4"
        self._video = VideoWriter(path, self.fps, self.output, pts_origin=pts)
        self._events = EventsWriter(path.with_suffix(".jsonl"))
        self._start_pts = pts
        self.segments.append(path)
        log.info("recording %s to %s", self.stream_id, path)

    def write(self, result: Result) -> None:
        pts = result.frame.pts
        if self._video is None or pts - self._start_pts >= self.segment_s:
            self._roll(pts)
        assert self._video is not None and self._events is not None
        self._video.write(result)
        record = result_to_json(result)
        record["video_pts"] = round(pts - self._start_pts, 6)
        record["wall_s"] = round(result.frame.decoded_wall_s, 3)
        self._events.write_record(record)

    def _close_segment(self) -> None:
        if self._video is not None:
            self._video.close()
        if self._events is not None:
            self._events.close()
        self._video = self._events = None

    def close(self) -> None:
        self._close_segment()


class ThreadedSink:
    """Runs another sink in its own thread behind a bounded queue. Overflow policy: the new result is dropped
    and counted (`on_drop(name)`), so a live pipeline never waits for the sink."""

    def __init__(self, sink: Sink, name: str, label: str, capacity: int = 120,
                 on_drop: Callable[[str, int], None] | None = None) -> None:
        self.sink = sink
        self.name = name  # what its drops are counted as (`record`)
        self.label = label  # whose results it takes, for thread names and logs
        self.on_drop = on_drop
        self.dropped = 0
        self._queue: queue.Queue[Result | object] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name=f"{name}-{label}", daemon=True)
        self._failed = False
        if on_drop is not None:
            on_drop(name, 0)  # listed (at 0) wherever drops are shown
        self._thread.start()

    def write(self, result: Result) -> None:
        if self._failed:
            return
        try:
            self._queue.put_nowait(result)
        except queue.Full:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop(self.name, 1)

    def _run(self) -> None:
        while (item := self._queue.get()) is not _END:
            assert isinstance(item, Result)
            try:
                self.sink.write(item)
            except OutputError as exc:  # a full or unwritable disk: say so once, keep the stream live
                log.error("%s: %s; %s stopped", self.label, exc, self.name)
                self._failed = True
                break
        try:
            self.sink.close()
        except OutputError as exc:
            log.error("%s: %s", self.label, exc)

    def close(self) -> None:
        """Write what is queued, then close the sink (blocks until done)."""
        if self._thread.is_alive() and not self._failed:
            self._queue.put(_END)
        self._thread.join(timeout=30)
