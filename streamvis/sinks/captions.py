"""WebVTT captions of the narration: one cue per description, from the frame it describes until the next one
(or until it has been spoken, at the narrator's speech rate). Cues are written as they close, so an
interrupted run keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from streamvis.errors import OutputError, reason
from streamvis.frame import Result, SceneDescription

MIN_CUE_S = 1.5


def vtt_time(seconds: float) -> str:
    """`83.5` -> `00:01:23.500`."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def spoken_seconds(text: str, words_per_minute: int) -> float:
    return max(MIN_CUE_S, len(text.split()) * 60.0 / words_per_minute + 0.5)


class CaptionsWriter:
    """A sink writing `Result.description`s to `path` as WebVTT cues (kept in `cues` too)."""

    def __init__(self, path: Path, words_per_minute: int = 165) -> None:
        self.path = path
        self.words_per_minute = words_per_minute
        self.cues: list[tuple[float, float, str]] = []
        self._open: SceneDescription | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {reason(exc)}") from exc
        self._file.write("WEBVTT\n\n")

    def _close_cue(self, until: float | None) -> None:
        if self._open is None:
            return
        start = self._open.pts
        end = start + spoken_seconds(self._open.text, self.words_per_minute)
        if until is not None:
            end = min(end, until)
        end = max(end, start + 0.5)
        text = self._open.text.replace("-->", "->")
        self.cues.append((start, end, text))
        self._file.write(f"{len(self.cues)}\n{vtt_time(start)} --> {vtt_time(end)}\n{text}\n\n")
        self._file.flush()
        self._open = None

    def write(self, result: Result) -> None:
        if result.description is not None:
            self._close_cue(result.description.pts)
            self._open = result.description

    def close(self) -> None:
        self._close_cue(None)
        self._file.close()
