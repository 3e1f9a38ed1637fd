"""Sources made from sources, for serving files live: played at their own frame rate (`PacedSource`, as a camera
delivers frames) and played again when they end (`LoopedSource`). Frames are never changed in place: a wrapper
yields new frames (`dataclasses.replace`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

from streamvis.frame import Frame
from streamvis.sources.base import Source


class _Wrapper(Source):
    """A source over another: the same identity, timing facts and report; closing it closes the inner one."""

    def __init__(self, inner: Source) -> None:
        super().__init__(inner.uri, inner.source_id, inner.live)
        self.inner = inner
        self.report = inner.report
        self.fps, self.audio_path, self.time_base = inner.fps, inner.audio_path, inner.time_base

    def close(self) -> None:
        super().close()
        self.inner.close()


class PacedSource(_Wrapper):
    """Releases each frame at its pts (counted from the first frame), and stamps it as decoded then."""

    def frames(self) -> Iterator[Frame]:
        start_wall: float | None = None
        start_pts = 0.0
        for frame in self.inner:
            if start_wall is None:
                start_wall, start_pts = time.monotonic(), frame.pts
            delay = (frame.pts - start_pts) - (time.monotonic() - start_wall)
            if delay > 0 and self._stop.wait(delay):
                return
            if self.closed:
                return
            yield dataclasses.replace(frame, decoded_at=time.monotonic())


class LoopedSource(_Wrapper):
    """Plays `first`, then `reopen()` again and again; indices and pts continue from one play to the next (the
    next play starts one frame step after the last frame). An empty play ends it (looping would spin)."""

    def __init__(self, first: Source, reopen: Callable[[], Source]) -> None:
        super().__init__(first)
        self._reopen = reopen
        self.plays = 0

    def frames(self) -> Iterator[Frame]:
        index_offset, pts_offset = 0, 0.0
        while not self.closed:
            last: Frame | None = None
            for frame in self.inner:
                last = dataclasses.replace(frame, index=frame.index + index_offset, pts=frame.pts + pts_offset)
                yield last
            self.inner.close()
            self.plays += 1
            if last is None or self.closed:
                return
            index_offset = last.index + 1
            pts_offset = last.pts + 1.0 / (self.inner.fps or 30.0)
            self.inner = self._reopen()
            self.report = self.inner.report
