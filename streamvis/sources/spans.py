"""Frame spans of a video file: where its keyframes are (from the packets, no decoding), and a span of frames a
source can start at (a seek) and stop after, numbered and timed exactly as when the whole file is read.

A video's frame `i` is the `i`-th frame its decoder gives. At a keyframe that starts a closed group of pictures,
every packet before it in decode order shows before it and every packet after it shows after it, so the keyframe
is frame number "packets before it" however the container's timestamps lie (B-frames in AVI). Spans start only at
such clean keyframes: `index_media` leaves out a keyframe that a later packet shows before (open GOPs).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from streamvis.errors import SourceError, reason

#: a packet's (pts, dts, byte position): how a seek's landing packet is recognised
PacketKey = tuple[int | None, int | None, int | None]

#: packets after a keyframe checked for one that shows before it (B-frames reach back a few frames at most)
LEADING_WINDOW = 16


@dataclass(frozen=True, slots=True)
class FrameSpan:
    """Frames [first, end) of a file, decoded from the keyframe `seek_frame` (at or before `first`), found by a
    seek to the packet `seek_key`. Frames from `seek_frame` to `first` are decoded (the decoder needs them) but
    not converted to images or yielded."""

    first: int
    end: int
    seek_frame: int = 0
    seek_key: PacketKey | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.seek_frame <= self.first <= self.end:
            raise ValueError(f"a frame span needs 0 <= seek_frame <= first <= end, got {self}")


@dataclass(frozen=True, slots=True)
class MediaIndex:
    """A file's video packets in decode order: one key per frame, the frames a span may start at, the rate."""

    keys: list[PacketKey]
    keyframes: list[int]  # frame indices of clean keyframes, ascending, 0 first
    fps: float

    @property
    def frames(self) -> int:
        return len(self.keys)

    def span(self, first: int, end: int) -> FrameSpan:
        """Frames [first, end), decoded from the last clean keyframe at or before `first`."""
        seek_frame = self.keyframes[max(0, bisect.bisect_right(self.keyframes, first) - 1)]
        return FrameSpan(first, end, seek_frame, self.keys[seek_frame] if seek_frame else None)


def index_media(path: str) -> MediaIndex:
    """Read `path`'s video packets (no decoding); raises `SourceError` naming the problem."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise SourceError(f"{path} has no video stream")
            stream = container.streams.video[0]
            packets = [(packet.pts, packet.dts, packet.pos, packet.is_keyframe)
                       for packet in container.demux(stream) if packet.size]
            fps = float(stream.average_rate or stream.guessed_rate or 30)
    except (av.error.FFmpegError, OSError) as exc:
        raise SourceError(f"cannot read {path}: {reason(exc)}") from exc
    keys: list[PacketKey] = [(pts, dts, pos) for pts, dts, pos, _ in packets]
    keyframes = [0] + [i for i, packet in enumerate(packets) if i and packet[3] and _clean(packets, i)]
    return MediaIndex(keys, keyframes, fps)


def _clean(packets: list[tuple[int | None, int | None, int | None, bool]], at: int) -> bool:
    """Whether no packet after keyframe `at` (within `LEADING_WINDOW`) shows before it, and none before it after
    it (when the packets carry pts; without them only a closed GOP can be assumed)."""
    key_pts = packets[at][0]
    if key_pts is None:
        return True
    after = [p[0] for p in packets[at + 1: at + 1 + LEADING_WINDOW] if p[0] is not None]
    before = [p[0] for p in packets[max(0, at - LEADING_WINDOW): at] if p[0] is not None]
    return all(pts > key_pts for pts in after) and all(pts < key_pts for pts in before)
