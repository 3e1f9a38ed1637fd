"""Image folders and globs as a source: files in name order, timed at `image_fps`."""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from streamvis.errors import SourceError, SourceNotFoundError
from streamvis.frame import Frame
from streamvis.sources.base import Source
from streamvis.sources.uri import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


def list_images(target: str) -> list[Path]:
    """The image files a folder, glob or single image names, sorted by name."""
    path = Path(target).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    elif any(c in target for c in "*?["):
        files = [Path(p) for p in glob.glob(str(path), recursive=True)]
        files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    elif path.is_file():
        files = [path]
    else:
        raise SourceNotFoundError(f"input not found: {target}")
    return sorted(files)


class ImageSource(Source):
    def __init__(self, uri: str, target: str, fps: float, source_id: str) -> None:
        super().__init__(uri, source_id, live=False)
        self.paths = list_images(target)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {target}")
        self.fps = fps
        self._frame_s = 1 / fps
        self.report.expected_frames = len(self.paths)

    def frames(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            if self.closed:
                return
            t0 = time.perf_counter()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.report.decode_errors += 1
                log.warning("%s: skipped %s (not a readable image)", self.source_id, path)
                continue
            self.report.frames += 1
            yield Frame(image, index, index * self._frame_s, self.source_id, (time.perf_counter() - t0) * 1000)
            index += 1
