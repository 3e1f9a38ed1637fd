"""Files, V4L2 cameras and network streams (RTSP, RTMP, HTTP(S), HLS, ...) decoded with PyAV.

Finite sources (files, and network sources that are recordings) end cleanly and report damage; live sources
reconnect with exponential backoff after a drop. Which a network source is, the source learns from the stream
when it opens (`stream_liveness`) unless `source.live` says. A file may be read as a `FrameSpan` (a seek and a
frame range): its frames are numbered and timed as when the whole file is read.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from av.video.frame import PictureType

from streamvis.config import SourceConfig
from streamvis.errors import DecodeError, SourceError, SourceNotFoundError, reason
from streamvis.frame import Frame
from streamvis.rate import RateSlots
from streamvis.sources.base import Source
from streamvis.sources.pixels import to_bgr
from streamvis.sources.spans import FrameSpan, PacketKey
from streamvis.sources.timestamps import PROBE_FRAMES, FrameClock
from streamvis.sources.uri import SourceSpec

log = logging.getLogger(__name__)


def describe_open_error(exc: BaseException, target: str, waited_s: float = 0.0, timeout_s: float | None = None) -> str:
    """A one-line reason for a failed `av.open`, in words a user can act on. `waited_s` is how long it took:
    a failure at the open timeout is a server that never answered, whatever FFmpeg calls it."""
    network = "://" in target
    if isinstance(exc, av.error.FileNotFoundError | FileNotFoundError):
        return f"input not found: {target}"
    if isinstance(exc, av.error.ConnectionRefusedError | ConnectionRefusedError):
        return f"cannot connect to {target}: connection refused (is the server running?)"
    if network and timeout_s is not None and waited_s >= 0.9 * timeout_s:
        return f"cannot open {target}: no answer before the timeout ({timeout_s:g} s, source.open_timeout_s)"
    if isinstance(exc, av.error.InvalidDataError):
        if network:
            return f"cannot open {target}: the server's answer is not a stream FFmpeg can read"
        return (f"cannot open {target}: not a media file FFmpeg can read, or damaged "
                "(a truncated MP4 whose index is at the end cannot be read)")
    if isinstance(exc, av.error.ExitError | TimeoutError | av.error.ConnectionResetError):
        return f"cannot open {target}: no answer before the timeout ({exc.__class__.__name__})"
    if isinstance(exc, av.error.PermissionError | PermissionError):
        return f"cannot open {target}: permission denied"
    return f"cannot open {target}: {reason(exc)}"


def _stamps(vframe: av.VideoFrame, time_base: Fraction | None) -> tuple[float | None, float | None]:
    """A decoded frame's (pts, dts) in seconds, None where it has none."""
    if time_base is None:
        return None, None
    pts = float(vframe.pts * time_base) if vframe.pts is not None else None
    dts = float(vframe.dts * time_base) if vframe.dts is not None else None
    return pts, dts


def upright(image: np.ndarray, rotation_deg: int | float) -> np.ndarray:
    """The image as it should be shown, given the stream's display rotation (phone videos: 90, -90, 180)."""
    turns = round(rotation_deg / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def open_options(spec: SourceSpec, config: SourceConfig) -> dict[str, str]:
    """FFmpeg demuxer options for a spec: transport and a short probe for RTSP (its session description already
    names the streams), no built-in HTTP reconnect, the user's extras."""
    options = dict(spec.options)
    scheme = spec.target.split(":", 1)[0].lower()
    if scheme in {"rtsp", "rtsps"}:
        options.setdefault("rtsp_transport", config.rtsp_transport)
        options.setdefault("analyzeduration", str(round(config.rtsp_probe_s * 1e6)))
    if scheme in {"http", "https"}:
        options.setdefault("reconnect", "0")  # we reconnect ourselves, with logging and backoff
    options.update(config.options)
    return options


REFERENCE_WINDOW = 100  # frames over which the share of frames others refer to is measured
REFERENCE_MIN_FRAMES = 30  # frames seen before that share is trusted
EARLY_SHARE_OF_SPACING = 0.45  # under `max_fps`, a frame this share of the frames' spacing before a slot falls on it
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp"})


def stream_liveness(spec: SourceSpec, container: Any, setting: bool | str = "auto") -> tuple[bool, str]:
    """Whether an opened source is live (reconnect on a drop, never ends by itself) or finite (ends at its end),
    and why, in words: `source.live` when it says; a device is live and a file finite; an RTSP/RTMP/UDP/SRT
    stream is live; an HTTP(S) source (HLS included) is finite when the stream has a known duration (an HLS VOD
    playlist, one with #EXT-X-ENDLIST, or a file the server gives the size of) and live otherwise (a sliding
    playlist, an endless response)."""
    if isinstance(setting, bool):
        return setting, f"source.live: {str(setting).lower()}"
    if spec.kind == "device":
        return True, "a camera"
    if spec.kind != "stream":
        return False, "a file"
    scheme = spec.target.split(":", 1)[0].lower()
    if scheme in LIVE_SCHEMES:
        return True, f"an {scheme.upper()} stream"
    duration_s = container.duration / 1e6 if container.duration and container.duration > 0 else None
    if "hls" in container.format.name:
        if duration_s is not None:
            return False, f"an HLS VOD playlist of {duration_s:.1f} s"
        return True, "a live HLS playlist (no #EXT-X-ENDLIST)"
    if duration_s is not None:
        return False, f"an HTTP file of {duration_s:.1f} s"
    return True, "an HTTP stream of unknown length"


def _key(packet: Any) -> PacketKey:
    return packet.pts, packet.dts, packet.pos


class AVSource(Source):
    """One video stream of anything FFmpeg opens; of a file, optionally only a `FrameSpan` of it. Its packets,
    video and audio, can be tapped as they are demuxed (`packet_tap`: a recording that copies them)."""

    copies_packets = True
    skips_frames = True

    def __init__(self, spec: SourceSpec, config: SourceConfig, source_id: str | None = None,
                 span: FrameSpan | None = None) -> None:
        super().__init__(spec.uri, source_id or spec.source_id, live=spec.live)
        self.spec = spec
        self.config = config
        self.span = span
        self.connection = 0  # this source's connections so far (a live source reconnects)
        self._referenced: deque[bool] = deque(maxlen=REFERENCE_WINDOW)  # lately decoded frames: not a B-frame
        self._slots: RateSlots | None = None  # the frames passed on under `max_fps`
        self._slots_references_only: bool | None = None  # what `_slots.early_s` was set for (None: not yet)
        if spec.kind == "file" and not Path(spec.target).exists():
            raise SourceNotFoundError(f"input not found: {spec.target}")
        if spec.kind == "device" and not Path(spec.target).exists():
            raise SourceNotFoundError(f"camera not found: {spec.target} (no such V4L2 device)")
        if span is not None and spec.kind != "file":
            raise SourceError(f"{spec.target}: a frame span needs a video file")
        # Open now, so that a bad input fails before any output is created.
        self._container: Any = self._open()
        self.live, why = stream_liveness(spec, self._container, config.live)
        if spec.kind in {"stream", "device"}:
            log.info("%s: %s (%s)", self.source_id, "live: reconnects after a drop" if self.live else
                     "finite: read to its end, no reconnect", why)
        stream = self._container.streams.video[0]
        stream.thread_type = "SLICE" if self.live else "AUTO"  # as learnt (`_open` used the URI's guess)
        self.fps = float(stream.average_rate) if stream.average_rate else None
        self.clock = FrameClock(self.source_id, self.fps)
        if not self.live:
            self.report.expected_frames = stream.frames or None
            duration = self._container.duration
            if duration and duration > 0 and self.fps:
                self.estimated_frames = round(duration / 1e6 * self.fps)
            if span is not None:
                self.report.expected_frames = span.end - span.first
            if stream.time_base is not None:
                self.time_base = Fraction(stream.time_base)
        if spec.kind == "file" and self._container.streams.audio:
            self.audio_path = spec.target

    def _open(self) -> Any:
        started = time.monotonic()
        try:
            container = av.open(
                self.spec.target,
                format=self.spec.format,
                options=open_options(self.spec, self.config),
                timeout=(self.config.open_timeout_s, self.config.stall_timeout_s),
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(describe_open_error(exc, self.spec.target, time.monotonic() - started,
                                                  self.config.open_timeout_s)) from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.spec.target} has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # FFmpeg knows no decoder for it (an unknown or left-out codec)
            container.close()
            raise SourceError(f"cannot decode {self.spec.target}: its video codec is not one this FFmpeg build "
                              f"decodes (PyAV {av.__version__}; FFmpeg decodes H.264, HEVC, VP8/9, AV1, MPEG-4, "
                              "MJPEG, ProRes and most others)")
        # Frame threading adds latency; live sources decode with slice threads only.
        stream.thread_type = "SLICE" if self.live else "AUTO"
        if self.config.decoder_threads:
            stream.codec_context.thread_count = self.config.decoder_threads
        return container

    def _past_rate(self, pts: float) -> bool:
        """Whether the frame at `pts` is past `max_fps` (counted, then left: decoded, never converted)."""
        rate = self.max_fps
        if not rate:
            self._slots = None
            self.pass_next_frame = False  # a request left from an earlier cap must not pass a frame of the next one
            return False
        if self._slots is None or self._slots.interval_s != 1 / rate:
            self._slots = RateSlots(1 / rate)
            self._slots_references_only = None
        if self._slots_references_only != self.references_only:
            # a frame less than half the frames' spacing before a slot is the one nearest it: it falls on the slot
            # (only the frames others refer to, 0.3 s apart for 3 a second, would otherwise give every other one, 2
            # a second); of two frames as near, the one after the slot. The share of reference frames is measured
            # while every frame is decoded, so it holds as long as `references_only` does.
            offered_fps = self.reference_fps if self.references_only else self.fps
            self._slots.early_s = EARLY_SHARE_OF_SPACING / offered_fps if offered_fps else 0.0
            self._slots_references_only = self.references_only
        if self._slots.take(pts):
            return False
        if self.pass_next_frame:
            self.pass_next_frame = False
            return False
        self.report.past_rate_frames += 1
        return True

    @property
    def reference_fps(self) -> float | None:
        if self.fps is None or len(self._referenced) < REFERENCE_MIN_FRAMES:
            return None
        return self.fps * sum(self._referenced) / len(self._referenced)

    def _decode(self, container: Any, packets: Iterator[Any] | None = None) -> Iterator[av.VideoFrame]:
        """Decode packet by packet (the container's, or `packets`), so one damaged packet costs a frame, not the
        file. With `references_only` (once the clock is known to follow the stream's own timestamps), the
        decoder leaves out the frames no other frame refers to."""
        stream = container.streams.video[0]
        tap = self.packet_tap if packets is None else None  # a span's seek is offline: never tapped
        demuxed = [stream, *container.streams.audio[:1]] if tap is not None else [stream]
        consecutive = 0
        skipping = False  # what the decoder was last told
        decoded_here = 0  # frames of this connection so far: the clock is chosen from the first ones
        for packet in packets if packets is not None else container.demux(*demuxed):
            if packet.stream.type != "video":  # demuxed for the tap alone
                if tap is not None:
                    tap.packet(self.connection, packet)
                continue
            skip = self.references_only and decoded_here > PROBE_FRAMES and self.clock.kind == "pts"
            if skip != skipping:
                stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            has_data = bool(packet.size)
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError as exc:
                consecutive += 1
                self.report.decode_errors += 1
                log.warning("%s: undecodable packet after frame %d (%s)", self.source_id,
                            self.report.frames, reason(exc))
                if consecutive > self.config.max_decode_errors:
                    raise DecodeError(f"{self.source_id}: {consecutive} consecutive undecodable packets "
                                      f"after frame {self.report.frames}") from exc
                continue
            finally:
                if tap is not None:  # only once decoded: the tap's thread rewrites the packet's times for its file
                    tap.packet(self.connection, packet)
            consecutive = 0
            decoded_here += len(decoded)
            if skipping:
                self.report.skipped_frames += int(has_data and not decoded)
            else:
                self._referenced.extend(frame.pict_type != PictureType.B for frame in decoded)
            yield from decoded
            if self.closed:
                return

    def _packets_from(self, container: Any, span: FrameSpan) -> Iterator[Any]:
        """The video packets from the span's keyframe on (the last, empty one flushes the decoder): a seek to it,
        recognised by its key; where the seek lands elsewhere, the packets are counted from the start instead (no
        decoding either way)."""
        stream = container.streams.video[0]
        if span.seek_key is not None and span.seek_key[0] is not None:
            container.seek(span.seek_key[0], stream=stream, backward=True)
            packets = container.demux(stream)
            for packet in packets:
                if not packet.size:
                    continue
                if _key(packet) == span.seek_key:
                    return itertools.chain([packet], packets)
                if packet.dts is not None and span.seek_key[1] is not None and packet.dts > span.seek_key[1]:
                    break
            log.info("%s: the seek to frame %d missed; counting packets from the start", self.source_id,
                     span.seek_frame)
        container.seek(stream.start_time or 0, stream=stream, backward=True)
        packets = container.demux(stream)
        counted = 0
        for packet in packets:
            if packet.size:
                if counted == span.seek_frame:
                    return itertools.chain([packet], packets)
                counted += 1
        return iter(())

    def _connection(self, container: Any) -> Iterator[tuple[av.VideoFrame, float, float | None]]:
        """The frames of one connection with their pts and the container's own pts (seconds or None): the clock
        is chosen from the first `PROBE_FRAMES`, also when a span then seeks on (so that its frames are timed as
        in a whole read)."""
        time_base = container.streams.video[0].time_base
        if self.packet_tap is not None:
            self.packet_tap.connected(self.connection, container)
        frames = self._decode(container)
        probe = list(itertools.islice(frames, PROBE_FRAMES))
        self.clock.start([_stamps(f, time_base) for f in probe])
        if self.span is not None and self.span.seek_frame > 0:
            probe = []
            frames = self._decode(container, self._packets_from(container, self.span))
            self.clock.resume_at(self.span.seek_frame)
        for vframe in itertools.chain(probe, frames):
            stamps = _stamps(vframe, time_base)
            yield vframe, self.clock.stamp(*stamps), stamps[0]

    def frames(self) -> Iterator[Frame]:
        first, end = (self.span.first, self.span.end) if self.span is not None else (0, None)
        index = self.span.seek_frame if self.span is not None else 0
        attempt = 0
        container = self._container
        while not self.closed:
            drop_reason = "stream ended"
            try:
                if container is None:
                    container = self._open()
                    self.report.reconnects += 1
                    log.warning("%s: reconnected (attempt %d)", self.source_id, attempt)
                t0 = time.perf_counter()
                for vframe, pts, source_pts in self._connection(container):
                    if end is not None and index >= end:
                        break
                    if index < first:  # decoded for the frames after it; not shown
                        index += 1
                        continue
                    if self._past_rate(pts):  # numbered all the same: `index` counts the frames decoded
                        index += 1
                        t0 = time.perf_counter()  # each frame passed on is timed by its own decoding
                        continue
                    image = upright(to_bgr(vframe), vframe.rotation)
                    decode_ms = (time.perf_counter() - t0) * 1000
                    self.report.frames += 1
                    attempt = 0
                    yield Frame(image, index, pts, self.source_id, decode_ms, source_pts=source_pts,
                                connection=self.connection)
                    index += 1
                    t0 = time.perf_counter()
                    if self.closed:
                        return
            except SourceError as exc:
                if not self.live:
                    raise
                drop_reason = str(exc)
            except (av.error.FFmpegError, OSError) as exc:
                if not self.live:
                    raise DecodeError(f"{self.source_id}: read error after frame {index}: "
                                      f"{reason(exc)}") from exc
                drop_reason = reason(exc)
            finally:
                if container is not None:
                    if self.packet_tap is not None:
                        self.packet_tap.disconnected(self.connection)
                    container.close()
                    container = None
                    self._container = None
                    self.connection += 1
            if not self.live:
                self._check_complete(index - first)
                return
            attempt += 1
            if attempt > self.config.reconnect_attempts:
                raise SourceError(f"{self.uri}: stream dropped ({drop_reason}) and "
                                  f"{self.config.reconnect_attempts} reconnect attempts failed")
            delay = min(self.config.reconnect_initial_delay_s * 2 ** (attempt - 1),
                        self.config.reconnect_max_delay_s)
            log.warning("%s: stream dropped (%s); reconnecting in %.1f s (attempt %d of %d)", self.source_id,
                        drop_reason, delay, attempt, self.config.reconnect_attempts)
            if self._stop.wait(delay):
                return

    def _check_complete(self, decoded: int) -> None:
        expected = self.report.expected_frames
        if self.report.decode_errors and expected and decoded < expected:
            self.report.incomplete = (f"decoded {decoded} of the {expected} frames the container lists "
                                      f"({self.report.decode_errors} undecodable packets: truncated or damaged file)")
        elif self.report.decode_errors:
            self.report.incomplete = f"{self.report.decode_errors} undecodable packets were skipped"
        elif expected and decoded < expected - max(2, expected // 100):
            self.report.incomplete = (f"decoded {decoded} of the {expected} frames the container lists "
                                      "(truncated file?)")
