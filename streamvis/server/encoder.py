"""Encode once, send to every viewer: one H.264 encoder per stream, its packets shared by all peers.

aiortc encodes per peer (and with x264's default preset), so N viewers cost N encoders. Here each annotated
frame is encoded once, in the stream's encoder thread, with x264 tuned for live (`ultrafast`, `zerolatency`,
constrained baseline so every browser decodes it); each viewer's track hands the packets to aiortc, which only
packetizes them (`H264Encoder.pack`). A viewer that joins, or falls behind, waits for a keyframe, and asks for
one so it never waits long.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamTrack

from streamvis.frame import Result
from streamvis.live.runner import LiveStream
from streamvis.server.peers import VIDEO_CLOCK

log = logging.getLogger(__name__)

PACKET_QUEUE = 30  # per viewer; a viewer this far behind skips to the next keyframe


class SharedEncoder:
    """Encodes a stream's newest results in its own thread; `subscribe` gets every packet on the event loop."""

    def __init__(self, stream: LiveStream, loop: asyncio.AbstractEventLoop, bitrate: int = 2_500_000,
                 keyframe_interval_s: float = 2.0) -> None:
        self.stream = stream
        self.loop = loop
        self.bitrate = bitrate
        self.keyframe_interval_s = keyframe_interval_s
        self._tracks: set[PacketTrack] = set()
        self._latest: Result | None = None
        self._ready = threading.Condition()
        self._want_keyframe = True
        self._stop = False
        self._codec: Any = None
        self._start = time.monotonic()
        self.frames_encoded = 0
        self._thread = threading.Thread(target=self._run, name=f"encode-{stream.stream_id}", daemon=True)
        self._thread.start()

    def push(self, result: Result) -> None:
        """From the pipeline thread: the newest result replaces one not yet encoded."""
        with self._ready:
            self._latest = result
            self._ready.notify()

    @property
    def active(self) -> bool:
        return bool(self._tracks)

    def request_keyframe(self) -> None:
        self._want_keyframe = True

    def add(self, track: PacketTrack) -> None:
        self._tracks.add(track)
        self.request_keyframe()

    def remove(self, track: PacketTrack) -> None:
        self._tracks.discard(track)

    def close(self) -> None:
        with self._ready:
            self._stop = True
            self._ready.notify()
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
        while True:
            with self._ready:
                while self._latest is None and not self._stop:
                    self._ready.wait()
                if self._stop:
                    return
                result, self._latest = self._latest, None
            if result is None:
                continue
            try:
                self._encode(result)
            except Exception:  # one bad frame must not end the stream for every viewer
                log.exception("stream %s: encoding failed", self.stream.stream_id)
                self._codec = None

    def _encode(self, result: Result) -> None:
        assert result.annotated is not None
        image = result.annotated
        height, width = image.shape[:2]
        if width % 2 or height % 2:
            image = image[: height - height % 2, : width - width % 2]
            height, width = image.shape[:2]
        if self._codec is None or (self._codec.width, self._codec.height) != (width, height):
            self._open(width, height, 30.0)
            self._want_keyframe = True
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        if self._want_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self._want_keyframe = False
        packets = list(self._codec.encode(frame))
        decoded_at = self.stream.decoded_at[result.frame.index % 256]
        self.stream.stats.stage("server_latency", (time.monotonic() - decoded_at) * 1e3)
        self.frames_encoded += 1
        for packet in packets:
            self.loop.call_soon_threadsafe(self._fan_out, packet)

    def _fan_out(self, packet: av.Packet) -> None:
        for track in list(self._tracks):
            track.offer(packet)


class PacketTrack(MediaStreamTrack):
    """A viewer's video track carrying the shared encoder's packets (aiortc packetizes without re-encoding)."""

    kind = "video"

    def __init__(self, encoder: SharedEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self._packets: asyncio.Queue[av.Packet] = asyncio.Queue(maxsize=PACKET_QUEUE)
        self._synced = False  # false until a keyframe: frames before it would not decode
        self.frames_sent = 0
        encoder.add(self)

    def offer(self, packet: av.Packet) -> None:
        if not self._synced:
            if not packet.is_keyframe:
                return
            self._synced = True
        if self._packets.full():  # this viewer fell behind: skip to the next keyframe
            while not self._packets.empty():
                self._packets.get_nowait()
            self._synced = False
            self.encoder.request_keyframe()
            return
        self._packets.put_nowait(packet)

    async def recv(self) -> av.Packet:
        packet = await self._packets.get()
        self.frames_sent += 1
        return packet

    def stop(self) -> None:
        self.encoder.remove(self)
        super().stop()
