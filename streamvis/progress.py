"""Progress of long runs: a rich bar (frames, fps, ETA) on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger("streamvis.progress")


class FrameProgress:
    """`update(frames)` as frames complete; shows a bar on a TTY, else logs every `interval_s`."""

    def __init__(self, name: str, total: int | None, enabled: bool = True, interval_s: float = 5.0) -> None:
        self.name = name
        self.total = total
        self.interval_s = interval_s
        self._tty = enabled and sys.stderr.isatty()
        self._enabled = enabled
        self._start = time.perf_counter()
        self._last_log = self._start
        self._frames = 0
        self._progress: Progress | None = None

    def __enter__(self) -> FrameProgress:
        if self._tty:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("frames {task.fields[fps]:>6.1f} fps"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.name, total=self.total, fps=0.0)
        return self

    def fps(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self._frames / elapsed if elapsed > 0 else 0.0

    def update(self, frames: int) -> None:
        self._frames = frames
        now = time.perf_counter()
        if self._progress is not None:
            if now - self._last_log >= 0.2 or frames == self.total:
                self._progress.update(self._task, completed=frames, fps=self.fps())
                self._last_log = now
        elif self._enabled and now - self._last_log >= self.interval_s:
            self._last_log = now
            if self.total:
                eta = (self.total - frames) / max(self.fps(), 1e-9)
                log.info("%s: %d/%d frames, %.1f fps, ETA %.0f s", self.name, frames, self.total, self.fps(), eta)
            else:
                log.info("%s: %d frames, %.1f fps", self.name, frames, self.fps())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self._frames, fps=self.fps())
            self._progress.stop()
