"""A stream's video for its viewers, one class per codec behind one protocol (`VideoOutput`).

- H.264 (`SharedH264Output`, the default): each annotated frame is encoded once, in the stream's encoder thread,
  with x264 tuned for live (`ultrafast`, `zerolatency`, constrained baseline so every browser decodes it); each
  viewer's `PacketTrack` hands the same packets to aiortc, which only packetizes them. N viewers cost one
  encoder. A viewer that joins, or falls behind, waits for a keyframe and asks for one so it never waits long.
- VP8 (`PerViewerOutput`): aiortc encodes per viewer; each viewer's `ResultTrack` takes the newest frame.

Frames wait in newest-wins slots (`streamvis.slot`): the encoder's and each VP8 viewer's; their drops show in
the stream's stats and `/metrics`. Latency is measured from a frame's decode to its encoded packet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from fractions import Fraction
from typing import Any, Protocol

import av
import cv2
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack

from streamvis.frame import Result
from streamvis.live.stats import StreamStats
from streamvis.server.aiortc_compat import sent_rtp_timestamp
from streamvis.slot import NewestSlot

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
RTP_MASK = 0xFFFFFFFF


def video_pts(result: Result) -> int:
    """A frame's presentation time on the 90 kHz video clock, from the moment it arrived (monotonic): what its
    RTP timestamp carries, plus each peer's random origin, and what its data-channel message names (`rtp_pts`,
    modulo 2^32), so a viewer can tell which message belongs to the frame on its screen."""
    return int(result.frame.decoded_at * VIDEO_CLOCK)


def image_of(result: Result, clean: bool) -> Any:
    """The image an output sends: the annotated frame, or the frame as it came (layers drawn by the viewer)."""
    return result.frame.image if clean else result.annotated


def scaled(result: Result, factor: float) -> Result:
    """The result with its annotated image `factor` times as wide and high (even sizes, for H.264's 4:2:0)."""
    assert result.annotated is not None
    height, width = result.annotated.shape[:2]
    size = (max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2))
    return dataclasses.replace(result, annotated=cv2.resize(result.annotated, size, interpolation=cv2.INTER_AREA))


def rtp_origin_of(track: Any, last_pts: int | None) -> int | None:
    """The random origin aiortc's RTP sender adds to a track's timestamps, read off the timestamp it last sent
    (for the frame whose pts was `last_pts`); None until a frame has gone out. The origin lives in the sender's
    loop, so this reads the sender's record of its last packet."""
    sender = getattr(track, "sender", None)
    sent = sent_rtp_timestamp(sender) if sender is not None else None
    if last_pts is None or sent is None:
        return None
    return (sent - last_pts) & RTP_MASK
PLI_MIN_INTERVAL_S = 0.5  # receivers' keyframe requests honoured at most this often
PACKET_QUEUE = 30  # per H.264 viewer; a viewer this far behind skips to the next keyframe
ENCODED_KEPT = 64  # encode times kept for the next frame message (2 s at 30 fps)


class VideoOutput(Protocol):
    """Turns a stream's results into viewers' video tracks."""

    codec: str
    clean: bool  # the frames as they came (the viewer draws the layers), not the annotated ones

    @property
    def active(self) -> bool:
        """Whether any viewer takes this output (nothing is encoded for nobody)."""

    def new_track(self) -> MediaStreamTrack:
        """A track for one more viewer."""

    def push(self, result: Result) -> None:
        """From the pipeline thread: the newest annotated frame."""

    def take_encoded(self) -> list[list[float]]:
        """From the pipeline thread: `[rtp_pts, encode start ms, encode done ms]` (server clock) of the frames
        encoded since the last call, for viewers' per-frame timelines; [] where each viewer encodes its own."""

    def close(self) -> None: ...


def video_output(codec: str, stats: StreamStats, loop: asyncio.AbstractEventLoop, clean: bool = False) -> VideoOutput:
    """The output for `codec` (`h264` or `vp8`), of the annotated frames or, `clean`, of the frames as they came."""
    if codec == "h264":
        return SharedH264Output(stats, loop, clean=clean)
    if codec == "vp8":
        return PerViewerOutput(stats, clean=clean)
    raise ValueError(f"no video output for codec {codec!r} (expected h264 or vp8)")


def note_origin(track: Any) -> None:
    """Once a track's first frame has gone out, learn its RTP origin and tell whoever listens (the viewer)."""
    if track.rtp_origin is None:
        track.rtp_origin = rtp_origin_of(track, track._last_pts)
        if track.rtp_origin is not None and track.on_rtp_origin is not None:
            track.on_rtp_origin(track.rtp_origin)


# -- H.264: encode once, send to every viewer ------------------------------------------------------------------
class SharedH264Output:
    """Encodes a stream's newest results in its own thread; every `PacketTrack` gets every packet on the loop."""

    codec = "h264"

    def __init__(self, stats: StreamStats, loop: asyncio.AbstractEventLoop, bitrate: int = 2_500_000,
                 keyframe_interval_s: float = 2.0, clean: bool = False) -> None:
        self.stats = stats
        self.loop = loop
        self.clean = clean
        self._last_pts = -1
        self.bitrate = bitrate
        self.keyframe_interval_s = keyframe_interval_s
        self._tracks: set[PacketTrack] = set()
        self.slot: NewestSlot[Result] = NewestSlot("encoder", stats.count_drop)
        stats.count_drop("encoder", 0)  # listed in /metrics from the start
        self._want_keyframe = True
        self._last_receiver_request = -PLI_MIN_INTERVAL_S
        self._codec: Any = None
        self.frames_encoded = 0
        # frames encoded lately, for the per-frame timeline (appended here, drained by the pipeline thread: a
        # deque's append and popleft are atomic); bounded, the oldest dropped when nobody drains it
        self._encoded: deque[list[float]] = deque(maxlen=ENCODED_KEPT)
        self._thread = threading.Thread(target=self._run, name=f"encode-{stats.stream}", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return bool(self._tracks)

    def push(self, result: Result) -> None:
        self.slot.put(result)

    def take_encoded(self) -> list[list[float]]:
        taken = []
        while self._encoded:
            taken.append(self._encoded.popleft())
        return taken

    def new_track(self) -> PacketTrack:
        track = PacketTrack(self)
        self._tracks.add(track)
        self.request_keyframe()
        return track

    def request_keyframe(self, from_receiver: bool = False) -> None:
        """The next frame is encoded as a keyframe. Receivers' requests (PLI) are limited to one per
        `PLI_MIN_INTERVAL_S`: many viewers losing packets at once must not turn the stream into keyframes."""
        now = time.monotonic()
        if from_receiver and now - self._last_receiver_request < PLI_MIN_INTERVAL_S:
            return
        if from_receiver:
            self._last_receiver_request = now
        self._want_keyframe = True

    def remove(self, track: PacketTrack) -> None:
        self._tracks.discard(track)

    def close(self) -> None:
        self.slot.close()
        self._thread.join(timeout=5)

    def _open(self, width: int, height: int, fps: float) -> None:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.bit_rate = self.bitrate
        codec.framerate = Fraction(round(fps or 30), 1)
        codec.time_base = Fraction(1, VIDEO_CLOCK)
        codec.profile = "Baseline"
        codec.options = {"preset": "ultrafast", "tune": "zerolatency", "level": "31",
                         "x264-params": f"keyint={round((fps or 30) * self.keyframe_interval_s)}:repeat-headers=1"}
        self._codec = codec

    def _run(self) -> None:
        while not self.slot.closed:
            result = self.slot.take(timeout=0.5)
            if result is None:
                continue
            try:
                self._encode(result)
            except Exception:  # one bad frame must not end the stream for every viewer
                log.exception("stream %s: encoding failed", self.stats.stream)
                self._codec = None

    def _encode(self, result: Result) -> None:
        image = image_of(result, self.clean)
        assert image is not None
        height, width = image.shape[:2]
        if width % 2 or height % 2:
            image = image[: height - height % 2, : width - width % 2]
            height, width = image.shape[:2]
        if self._codec is None or (self._codec.width, self._codec.height) != (width, height):
            self._open(width, height, 30.0)
            self._want_keyframe = True
        started = time.monotonic()
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self._last_pts = max(video_pts(result), self._last_pts + 1)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        if self._want_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self._want_keyframe = False
        packets = list(self._codec.encode(frame))
        done = time.monotonic()
        self.stats.stage("encode", (done - started) * 1e3)
        self.stats.stage("to_encoder", (started - result.frame.decoded_at) * 1e3)
        self.stats.stage("server_latency", (done - result.frame.decoded_at) * 1e3)
        self._encoded.append([video_pts(result) & RTP_MASK, round(started * 1e3, 3), round(done * 1e3, 3)])
        self.frames_encoded += 1
        for packet in packets:
            self.loop.call_soon_threadsafe(self._fan_out, packet)

    def _fan_out(self, packet: av.Packet) -> None:
        for track in list(self._tracks):
            track.offer(packet)


class PacketTrack(MediaStreamTrack):
    """A viewer's video track carrying the shared encoder's packets (aiortc packetizes without re-encoding).

    Its queue is a FIFO of packets, not a slot: packets cannot be skipped one by one (each depends on the
    previous), so a viewer that falls `PACKET_QUEUE` behind drops them all and waits for the next keyframe."""

    kind = "video"

    def __init__(self, output: SharedH264Output) -> None:
        super().__init__()
        self.output = output
        self._packets: asyncio.Queue[av.Packet] = asyncio.Queue(maxsize=PACKET_QUEUE)  # overflow: resync
        self._synced = False  # false until a keyframe: frames before it would not decode
        self.frames_sent = 0
        self.sender: Any = None  # the RTP sender that sends it, set by the viewer
        self.rtp_origin: int | None = None
        self.on_rtp_origin: Any = None  # called once with the origin, when known
        self._last_pts: int | None = None

    def keyframe_requested(self) -> None:
        """A receiver asked for a keyframe (a PLI; `aiortc_compat` passes it on): the shared encoder makes one."""
        self.output.request_keyframe(from_receiver=True)

    def offer(self, packet: av.Packet) -> None:
        if not self._synced:
            if not packet.is_keyframe:
                return
            self._synced = True
        if self._packets.full():  # this viewer fell behind: skip to the next keyframe
            dropped = self._packets.qsize()
            while not self._packets.empty():
                self._packets.get_nowait()
            self.output.stats.count_drop("viewer", dropped)
            self._synced = False
            self.output.request_keyframe()
            return
        self._packets.put_nowait(packet)

    async def recv(self) -> av.Packet:
        note_origin(self)
        packet = await self._packets.get()
        self.frames_sent += 1
        self._last_pts = int(packet.pts) if packet.pts is not None else None
        return packet

    def stop(self) -> None:
        self.output.remove(self)
        super().stop()


# -- VP8: aiortc encodes per viewer ----------------------------------------------------------------------------
class PerViewerOutput:
    """Every viewer's track takes the newest result from its own slot and aiortc encodes it for that viewer."""

    codec = "vp8"

    def __init__(self, stats: StreamStats, clean: bool = False) -> None:
        self.stats = stats
        self.clean = clean
        stats.count_drop("viewer", 0)
        self._tracks: set[ResultTrack] = set()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._tracks)

    def new_track(self) -> ResultTrack:
        track = ResultTrack(self)
        with self._lock:
            self._tracks.add(track)
        return track

    def remove(self, track: ResultTrack) -> None:
        with self._lock:
            self._tracks.discard(track)

    def push(self, result: Result) -> None:
        with self._lock:
            tracks = list(self._tracks)
        for track in tracks:
            track.slot.put(result)

    def take_encoded(self) -> list[list[float]]:
        return []  # each viewer's track encodes for itself: no one time to report

    def close(self) -> None:
        with self._lock:
            tracks = list(self._tracks)
        for track in tracks:
            track.slot.close()


class ResultTrack(VideoStreamTrack):
    """A video track that yields the newest annotated frame; frames a slow peer missed are dropped (counted)."""

    def __init__(self, output: PerViewerOutput) -> None:
        super().__init__()
        self.output = output
        self.slot: NewestSlot[Result] = NewestSlot("viewer", output.stats.count_drop)
        self.frames_sent = 0
        self.sender: Any = None
        self.rtp_origin: int | None = None
        self.on_rtp_origin: Any = None
        self._last_pts: int | None = None

    async def recv(self) -> av.VideoFrame:
        note_origin(self)
        result = await self.slot.take_async()
        if result is None:  # the stream's output closed
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        image = image_of(result, self.output.clean)
        assert image is not None
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = max(video_pts(result), (self._last_pts or 0) + 1)
        self._last_pts = frame.pts
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        decoded_at = result.frame.decoded_at
        self.output.stats.stage("to_encoder", (time.monotonic() - decoded_at) * 1e3)
        frame.opaque = (self.output.stats, decoded_at)
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        self.output.remove(self)
        self.slot.close()
        super().stop()
