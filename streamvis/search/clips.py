"""A moment cut out of a video by copying its packets (no re-encoding): from the keyframe at or before its start
to its end, timestamps moved to start at 0; video only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from streamvis.errors import OutputError


def cut(video: Path, start_s: float, end_s: float, out: Path) -> Path:
    """`video` from the keyframe at or before `start_s` to `end_s` into `out` (the same codec, packets copied)."""
    try:
        with av.open(str(video)) as src:
            stream = src.streams.video[0]
            time_base = stream.time_base
            if time_base is None:
                raise OutputError(f"{video}: its video stream has no time base to cut by")
            out.parent.mkdir(parents=True, exist_ok=True)
            src.seek(max(0, int(start_s / time_base)), stream=stream, backward=True, any_frame=False)
            with av.open(str(out), "w") as dst:
                copy: Any = dst.add_stream_from_template(stream)
                origin: int | None = None
                for packet in src.demux(stream):
                    if packet.pts is None or packet.dts is None:
                        continue
                    if origin is None:
                        if not packet.is_keyframe:
                            continue
                        origin = packet.dts
                    if packet.pts * time_base > end_s:
                        if packet.is_keyframe:
                            break
                        continue
                    packet.pts -= origin
                    packet.dts -= origin
                    packet.stream = copy
                    dst.mux(packet)
    except av.error.FFmpegError as exc:
        raise OutputError(f"cannot cut {start_s:.1f}-{end_s:.1f} s of {video} into {out}: {exc}") from None
    return out
