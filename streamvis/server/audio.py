"""Narration as a WebRTC audio track: silence, and the spoken narration when there is some (aiortc encodes
it as Opus), so WHEP and Python clients hear what the browser viewer would speak."""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RATE = 48_000
PTIME = 0.02
SAMPLES = int(RATE * PTIME)
MAX_QUEUED_S = 30.0  # a viewer that cannot keep up hears only the newest narration


class NarrationAudioTrack(MediaStreamTrack):
    """20 ms frames of 48 kHz mono, paced in real time; `play()` queues speech samples."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        self._start: float | None = None
        self._timestamp = 0
        self.samples_sent = 0
        self.speech_samples_sent = 0

    def play(self, samples: np.ndarray) -> None:
        """Queue int16 mono samples at 48 kHz (called on the event loop)."""
        if self._queued + len(samples) > MAX_QUEUED_S * RATE:
            self._queue.clear()
            self._queued = 0
        self._queue.append(samples)
        self._queued += len(samples)

    def _take(self) -> np.ndarray:
        out = np.zeros(SAMPLES, np.int16)
        filled = 0
        while filled < SAMPLES and self._queue:
            head = self._queue[0]
            n = min(SAMPLES - filled, len(head))
            out[filled:filled + n] = head[:n]
            filled += n
            if n == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[n:]
        self._queued -= filled
        self.speech_samples_sent += filled
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += SAMPLES
            await asyncio.sleep(max(0.0, self._start + self._timestamp / RATE - time.monotonic()))
        frame = av.AudioFrame.from_ndarray(self._take()[None], format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, RATE)
        self.samples_sent += SAMPLES
        return frame


async def synthesize_for_tracks(stream_id: str, text: str, voice: str, words_per_minute: int) -> np.ndarray | None:
    """`text` spoken by espeak-ng (in a thread, never on the loop) as 48 kHz samples for `NarrationAudioTrack`;
    None, with a warning, when speech is not available."""
    from streamvis.narration.speech import SpeechError, resample, synthesize

    try:
        samples, rate = await asyncio.to_thread(synthesize, text, voice, words_per_minute)
    except SpeechError as exc:
        log.warning("stream %s: %s", stream_id, exc)
        return None
    return resample(samples, rate, RATE)
