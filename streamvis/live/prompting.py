"""Viewers' prompts on one live stream (clicks, boxes, removals, words): queued from any thread, applied by the
stream's pipeline thread between two frames. Words are first grounded into boxes on the newest frame, in the
stream's detector worker (Florence-2 phrase grounding), unless the segmenter takes words itself (SAM 3). At most
`MAX_PENDING_PROMPTS` wait; one more is an error the viewer sees, never an unbounded queue."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import supervision as sv

from streamvis.frame import Result
from streamvis.pipeline.step import Pipeline
from streamvis.prompts import Prompt, PromptError, PromptResult

log = logging.getLogger(__name__)
MAX_PENDING_PROMPTS = 16  # per stream


class LivePrompts:
    """The prompts of one stream: `submit` from any thread, `apply_waiting` from its pipeline thread."""

    def __init__(self, stream_id: str, pipeline: Pipeline, worker: ThreadPoolExecutor,
                 latest: Callable[[], Result | None]) -> None:
        self.stream_id = stream_id
        self.pipeline = pipeline
        self._worker = worker  # the stream's detector worker: grounding is a detector run
        self._latest = latest  # the newest result, what words are grounded on
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Prompt, Future[PromptResult], str]] = deque()

    def submit(self, prompt: Prompt) -> Future[PromptResult]:
        """Queue a viewer's prompt; the future resolves once the pipeline has applied it (the object's mask is then
        on the next frame), or fails with a `PromptError` that says why. Words are first grounded on the newest
        frame, in the detector's worker (Florence-2 phrase grounding), unless the segmenter takes words itself."""
        future: Future[PromptResult] = Future()
        if prompt.kind == "text" and not self.pipeline.takes_words:
            ground = self.pipeline.grounder()
            if ground is None:
                future.set_exception(PromptError("prompt: words need Florence-2 (as the detector or the narrator) "
                                                 "or segmenter.type: sam3 on this stream's pipeline"))
                return future
            self._worker.submit(self._ground, prompt, ground, future)
            return future
        self._queue_prompt(prompt, future)
        return future

    def _queue_prompt(self, prompt: Prompt, future: Future[PromptResult], class_name: str = "object") -> None:
        with self._lock:
            if len(self._waiting) >= MAX_PENDING_PROMPTS:
                future.set_exception(PromptError(f"prompt: {MAX_PENDING_PROMPTS} prompts are waiting on this "
                                                 "stream already; try again"))
                return
            self._waiting.append((prompt, future, class_name))

    def _ground(self, prompt: Prompt, ground: Callable[[np.ndarray, str], sv.Detections],
                future: Future[PromptResult]) -> None:
        """Words to boxes on the newest frame, then each box a new object on that frame."""
        try:
            latest = self._latest()
            if latest is None:
                raise PromptError("prompt: the stream has no frame yet")
            found = ground(latest.frame.image, prompt.text)
            log.info("stream %s: '%s' grounded on frame %d: %d box(es)", self.stream_id, prompt.text,
                     latest.frame.index, len(found))
            names = found.data.get("class_name", np.array(["object"] * len(found)))
            boxes = [Prompt("box", latest.frame.index, box_xyxy=tuple(float(v) for v in xyxy),  # type: ignore[arg-type]
                            request_id=prompt.request_id) for xyxy in found.xyxy]
            if not boxes:
                future.set_result(PromptResult(prompt.request_id, frame_index=latest.frame.index,
                                               note=f"nothing matched '{prompt.text}'"))
                return
            parts = [Future() for _ in boxes]  # type: ignore[var-annotated]
            for box, part, name in zip(boxes, parts, names, strict=True):
                self._queue_prompt(box, part, str(name))
            combined = PromptResult(prompt.request_id, frame_index=latest.frame.index)
            for part in parts:
                done = part.result(timeout=30)
                combined.object_ids += done.object_ids
                combined.note = done.note or combined.note
            future.set_result(combined)
        except Exception as exc:  # the viewer learns why; the stream goes on
            if not isinstance(exc, PromptError):
                log.exception("stream %s: grounding '%s' failed", self.stream_id, prompt.text)
            future.set_exception(exc)

    @property
    def waiting(self) -> bool:
        """Whether a prompt waits for the pipeline thread."""
        with self._lock:
            return bool(self._waiting)

    def apply_waiting(self) -> None:
        """In the pipeline thread, between two frames: every waiting prompt, in order."""
        while True:
            with self._lock:
                if not self._waiting:
                    return
                prompt, future, class_name = self._waiting.popleft()
            try:
                future.set_result(self.pipeline.apply_prompt(prompt, class_name))
            except PromptError as exc:
                future.set_exception(exc)
            except Exception as exc:  # a prompt the model could not take must not end the stream
                log.exception("stream %s: prompt %s failed", self.stream_id, prompt.kind)
                future.set_exception(exc)
