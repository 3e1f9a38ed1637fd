"""Recording a live camera as it comes (`serve --record DIR`): the camera's own packets, video and audio, copied
into MP4 segments without decoding or encoding them, each with the JSONL of its frames' detections beside it.

`DIR/<stream>/<stream>-<UTC start>.mp4` + `.jsonl`, a new pair at the first video keyframe `segment_s` seconds
(of the camera's time) after the segment began, and at each reconnection; every segment starts on a keyframe,
so it plays from its first frame, with its timestamps from 0. Each JSONL record is the one `process --events`
writes (the stream's frame index and pts) plus `video_pts`, the frame's time in its segment's video, and `wall_s`,
when it was decoded (Unix time): what a live index's moments are cut from the recording by (`search.clips`).

The source hands packets over from its reading thread (`PacketTap`); results come from the pipeline thread
(`Sink.write`); both go through one bounded queue to the recorder's own thread, which does all the writing, so a
slow disk never holds up the live path. On overflow a packet is dropped and counted (`record` drops), and the
video waits for its next keyframe, so what is written always decodes. A video codec MP4 cannot carry is recorded
as the annotated video instead (`SegmentedRecorder`), an audio codec it cannot carry is left out; each said once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from streamvis.errors import OutputError, reason
from streamvis.frame import Result
from streamvis.serialize import result_to_json
from streamvis.sinks import RECENT_SEGMENTS, Sink
from streamvis.sinks.events import EventsWriter

log = logging.getLogger(__name__)

DISCONTINUITY_S = 5.0  # a jump forward of more than this (or any step back) in a camera's timestamps: a new segment
MP4_VIDEO = frozenset({"h264", "hevc", "av1", "mpeg4", "vp9"})
MP4_AUDIO = frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"})
QUEUE_ITEMS = 4000  # packets and results waiting for the recorder thread (about 2 minutes of a 10 fps camera)
_END = object()


@dataclass(slots=True)
class _Templates:
    """A connection's stream parameters, kept in a container that is never written, so that segments opened
    after the camera's own container has closed can still copy them."""

    holder: Any
    video: Any
    audio: Any | None
    video_codec: str
    fps: float | None

    def frame_ticks(self, time_base: Any) -> int:
        """One frame's duration in `time_base` ticks (at least one)."""
        return max(1, round(1 / (self.fps or 30.0) / time_base))


@dataclass(slots=True)
class _Segment:
    connection: int
    start_s: float  # the container's pts of its first (key)frame, seconds
    path: Path
    output: Any
    video: Any
    audio: Any | None
    events: EventsWriter
    origin_s: float  # the container time made 0 in the segment: its first keyframe's decode time
    last_video_s: float = float("-inf")  # the decode time of the last video packet written
    video_us: set[int] = field(default_factory=set)  # the pts (microseconds) of every video packet written


class CopyRecorder:
    """A `PacketTap` for a live source plus a `Sink` for its results (see the module text). `fallback` records the
    annotated video when the camera's codec cannot be copied into MP4; `wants_annotated` says when that is."""

    def __init__(self, folder: Path, stream_id: str, segment_s: float,
                 fallback: Callable[[], Sink] | None = None, on_drop: Callable[[str, int], None] | None = None) -> None:
        if segment_s <= 0:
            raise ValueError(f"segment_s must be positive, got {segment_s}")
        self.folder = folder / stream_id
        self.stream_id = stream_id
        self.segment_s = segment_s
        self.segments: deque[Path] = deque(maxlen=RECENT_SEGMENTS)  # the newest segments written
        self.dropped = 0
        self._make_fallback = fallback
        self._fallback: Sink | None = None
        self._on_drop = on_drop
        self._queue: queue.Queue[tuple[str, Any, Any] | object] = queue.Queue(maxsize=QUEUE_ITEMS)
        self._templates: dict[int, _Templates] = {}
        self._segment: _Segment | None = None
        self._previous: _Segment | None = None  # results of its last frames may still come
        self._waiting_for_key = True  # until a video keyframe: after a start, a reconnection or a drop
        self._untimed_key: tuple[int, Any] | None = None
        self._copying = True
        self._said: set[str] = set()
        self._failed = False
        if on_drop is not None:
            on_drop("record", 0)
        self._thread = threading.Thread(target=self._run, name=f"record-{stream_id}", daemon=True)
        self._thread.start()

    # -- from the source's reading thread (PacketTap) -------------------------------------------------------------
    def connected(self, connection: int, container: Any) -> None:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        try:
            holder = av.open(io.BytesIO(), "w", format="mp4")
            templates = _Templates(holder, holder.add_stream_from_template(video),
                                   holder.add_stream_from_template(audio) if audio is not None
                                   and audio.codec_context.name in MP4_AUDIO else None, video.codec_context.name,
                                   float(video.average_rate) if video.average_rate else None)
        except (av.error.FFmpegError, ValueError) as exc:  # never let the recording stop the camera's reading
            self.uncopyable(f"its streams cannot be copied ({reason(exc)})")
            return
        if audio is not None and templates.audio is None:
            self._say("audio", f"{self.stream_id}: its {audio.codec_context.name} audio cannot go into MP4; the "
                               "recording leaves it out")
        self._copying = templates.video_codec in MP4_VIDEO  # read by `wants_annotated` from now on
        self._put(("connected", connection, templates))

    def packet(self, connection: int, packet: Any) -> None:
        if packet.size == 0:
            return
        self._put(("packet", connection, (packet, packet.stream.type == "video")))

    def disconnected(self, connection: int) -> None:
        self._put(("disconnected", connection, None))

    def uncopyable(self, why: str) -> None:
        self._copying = False
        self._say("video", f"{self.stream_id}: {why}: recording the annotated video")

    # -- from the pipeline thread (Sink) --------------------------------------------------------------------------
    def wants_annotated(self) -> bool:
        """Whether results must carry the annotated image: only when the camera's video is not copied."""
        return not self._copying

    def write(self, result: Result) -> None:
        if not self._copying:  # the annotated video instead, through its own threaded recorder
            if self._fallback is None and self._make_fallback is not None:
                self._fallback = self._make_fallback()
            if self._fallback is not None and result.annotated is not None:
                self._fallback.write(result)
            return
        if result.frame.source_pts is not None:  # queued as its record: no image waits in the queue
            record = result_to_json(result)
            record["wall_s"] = round(result.frame.decoded_wall_s, 3)
            self._put(("result", result.frame.connection, (result.frame.source_pts, record)))

    def close(self) -> None:
        """Write what is queued, then close the segment (blocks until done)."""
        if self._thread.is_alive():
            self._queue.put(_END)
        self._thread.join(timeout=30)
        if self._fallback is not None:
            self._fallback.close()

    def _put(self, item: tuple[str, Any, Any]) -> None:
        if self._failed:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop("record", 1)
            if item[0] == "packet":
                self._queue_wait_for_key()

    def _queue_wait_for_key(self) -> None:
        """After a dropped packet, what is written resumes at the next video keyframe (it must decode). Set from
        the reading thread; the recorder thread reads it when the packets before the drop are written, which at
        worst skips a few more of them."""
        self._waiting_for_key = True

    # -- the recorder's own thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not _END:
                assert isinstance(item, tuple)
                kind, connection, payload = item
                if kind == "connected":
                    self._templates[connection] = payload
                    if payload.video_codec not in MP4_VIDEO:
                        self._say("video", f"{self.stream_id}: its {payload.video_codec} video cannot be copied "
                                           "into MP4; recording the annotated video instead")
                    self._roll(None)
                elif kind == "packet":
                    self._packet(connection, *payload)
                elif kind == "disconnected":
                    self._roll(None)
                    templates = self._templates.pop(connection, None)
                    if templates is not None:
                        _close_quietly(templates.holder)
                else:
                    self._result(connection, *payload)
        except OutputError as exc:  # a full or unwritable disk: say so once, keep the stream live
            log.error("%s: %s; recording stopped", self.stream_id, exc)
            self._failed = True
        except Exception:  # a recording's failure must not stop the stream
            log.exception("%s: the recorder failed; recording stopped", self.stream_id)
            self._failed = True
        finally:
            self._roll(None)
            self._close_previous()
            for templates in self._templates.values():
                _close_quietly(templates.holder)

    def _packet(self, connection: int, packet: Any, is_video: bool) -> None:
        templates = self._templates.get(connection)
        if templates is None or not self._copying:
            return
        if packet.pts is None:
            # an RTSP camera's first packet (its keyframe) comes before its timing is known: it is timed one
            # frame before the next video packet; any other packet without a time is left out
            if is_video and packet.is_keyframe:
                self._untimed_key = (connection, packet)
            return
        if is_video and self._untimed_key is not None:
            held_connection, held = self._untimed_key
            self._untimed_key = None
            if held_connection == connection:
                step = templates.frame_ticks(packet.time_base)
                held.pts = held.dts = (packet.dts if packet.dts is not None else packet.pts) - step
                self._packet(connection, held, True)
        decode_s = float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
        segment = self._segment
        if is_video and segment is not None and segment.connection == connection and not (
                segment.last_video_s <= decode_s <= segment.last_video_s + DISCONTINUITY_S):
            # an RTSP camera's clock is re-based when its first sender report arrives; a camera may step: the
            # segment ends here, and the next starts at the next keyframe, with its own timestamps from 0
            self._say("jump", f"{self.stream_id}: the camera's timestamps jumped; its recording goes on in a new "
                              "segment from the next keyframe")
            self._roll(None)
            segment = None
        if is_video and packet.is_keyframe:
            start_s = float(packet.pts * packet.time_base)
            if segment is None or segment.connection != connection or start_s - segment.start_s >= self.segment_s:
                self._roll(self._open(connection, start_s, decode_s, templates))
            self._waiting_for_key = False  # (after a drop within a segment, it carries on from this keyframe)
        segment = self._segment
        if segment is None or self._waiting_for_key or segment.connection != connection:
            return
        target = segment.video if is_video else segment.audio
        if target is None:
            return
        pts_us = round(float(packet.pts * packet.time_base) * 1e6)
        origin = round(segment.origin_s / packet.time_base)  # the same instant in this stream's time base
        packet.pts -= origin
        packet.dts = packet.dts - origin if packet.dts is not None else packet.pts
        if packet.pts < 0 or packet.dts < 0:  # audio from before the segment's first frame
            return
        packet.stream = target
        try:
            segment.output.mux(packet)
        except av.error.FFmpegError as exc:
            if isinstance(exc, av.error.OSError):
                raise OutputError(f"cannot write {segment.path}: {reason(exc)}") from exc
            self._say("mux", f"{self.stream_id}: a packet could not be written ({reason(exc)}); skipped")
            return
        if is_video:
            segment.last_video_s = decode_s
            segment.video_us.add(pts_us)

    def _open(self, connection: int, start_s: float, origin_s: float, templates: _Templates) -> _Segment:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        stem, n = f"{self.stream_id}-{stamp}", 2
        while (self.folder / f"{stem}.mp4").exists():
            stem, n = f"{self.stream_id}-{stamp}-{n}", n + 1
        path = self.folder / f"{stem}.mp4"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            output = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        except (OSError, av.error.FFmpegError) as exc:
            raise OutputError(f"cannot write {path}: {reason(exc)}") from exc
        video = output.add_stream_from_template(templates.video)
        audio = output.add_stream_from_template(templates.audio) if templates.audio is not None else None
        self.segments.append(path)
        log.info("recording %s to %s (the camera's stream, copied)", self.stream_id, path)
        return _Segment(connection, start_s, path, output, video, audio, EventsWriter(path.with_suffix(".jsonl")),
                        origin_s)

    def _roll(self, new: _Segment | None) -> None:
        """`new` becomes the segment written to; the one before stays open for its last results."""
        if self._segment is not None:
            self._close_previous()
            self._segment.output.close()
            self._previous = self._segment
        self._segment = new
        if new is None:
            self._waiting_for_key = True

    def _close_previous(self) -> None:
        if self._previous is not None:
            self._previous.events.close()
            self._previous = None

    def _result(self, connection: int, source_pts: float, record: dict[str, Any]) -> None:
        """A frame's record into the segment holding its video packet (none: its packet was not recorded)."""
        key = round(source_pts * 1e6)
        for segment in (self._previous, self._segment):
            if segment is not None and segment.connection == connection and key in segment.video_us:
                if segment is self._segment:
                    self._close_previous()  # results come in frame order: the one before has had all of its own
                record["video_pts"] = round(source_pts - segment.start_s, 6)
                segment.events.write_record(record)
                return

    def _say(self, kind: str, message: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            log.warning("%s", message)


def _close_quietly(container: Any) -> None:
    with contextlib.suppress(av.error.FFmpegError):  # a holder was never written: it has no trailer to write
        container.close()
