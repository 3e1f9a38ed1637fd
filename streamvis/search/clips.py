"""A moment cut out of a video by copying its packets (no re-encoding): from the keyframe at or before its start
to its end, timestamps moved to start at 0; video only. The cut is whole in decoding order (every packet decoded by
the moment's end), so a B-frame shown before the end keeps the later frame it refers to, and the clip may show a
frame or two past the end. A live index's moments (Unix times) are cut from the recording segment that holds them
(`serve --record`: each segment's JSONL maps `wall_s` to `video_pts`); a moment that runs on past its segment's end
is cut to that end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av

from streamvis.errors import OutputError


def cut(video: Path, start_s: float, end_s: float, out: Path) -> Path:
    """`video` from the keyframe at or before `start_s` to `end_s` into `out` (the same codec, packets copied): every
    packet from that keyframe on that is decoded at or before `end_s`, so no frame loses one it refers to."""
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
                    if packet.dts * time_base > end_s:  # every frame shown by end_s is in, with its references
                        break
                    packet.pts -= origin
                    packet.dts -= origin
                    packet.stream = copy
                    dst.mux(packet)
    except av.error.FFmpegError as exc:
        raise OutputError(f"cannot cut {start_s:.1f}-{end_s:.1f} s of {video} into {out}: {exc}") from None
    return out


def _wall_to_video(records: list[dict[str, Any]], start_s: float, end_s: float) -> tuple[float, float] | None:
    """The video times of a segment's frames from `start_s` to `end_s` (Unix times), None if it has none."""
    inside = [r["video_pts"] for r in records if start_s <= r["wall_s"] <= end_s]
    return (min(inside), max(inside)) if inside else None


def _records(jsonl: Path) -> list[dict[str, Any]]:
    records = []
    with jsonl.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line of a segment still being written
                continue
            if "wall_s" in record and "video_pts" in record:
                records.append(record)
    return records


def _first_wall_s(jsonl: Path) -> float | None:
    """When a segment's first recorded frame was decoded (Unix time), None for a segment without one yet."""
    with jsonl.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                return float(json.loads(line)["wall_s"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                return None
    return None


def cut_recording(folder: Path, start_s: float, end_s: float, out: Path) -> Path:
    """The moment from `start_s` to `end_s` (Unix times) out of the recording in `folder` (segments, each with its
    JSONL), by copying packets from the first segment that holds part of it. Only a segment whose time can hold the
    moment (from its first frame to the next segment's first) is read whole."""
    begins = {jsonl: _first_wall_s(jsonl) for jsonl in folder.glob("*.jsonl") if jsonl.with_suffix(".mp4").is_file()}
    segments = sorted((t, jsonl) for jsonl, t in begins.items() if t is not None)
    for i, (begin_s, jsonl) in enumerate(segments):
        if begin_s > end_s or (i + 1 < len(segments) and segments[i + 1][0] <= start_s):
            continue  # it begins after the moment, or the next one begins before the moment does
        span = _wall_to_video(_records(jsonl), start_s, end_s)
        if span is None:
            continue
        video = jsonl.with_suffix(".mp4")
        try:
            return cut(video, span[0], span[1], out)
        except OutputError:
            if i == len(segments) - 1:  # the newest: an MP4 gets its index when its segment closes
                raise OutputError(f"{video.name} is still being recorded: the moment can be cut once its segment "
                                  "closes (serve --record-segment-s)") from None
            raise
    raise OutputError(f"{folder}: no recording holds {start_s:.1f}-{end_s:.1f} (Unix time)")
