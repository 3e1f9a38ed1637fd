"""The spoken narration as an audio-description track in the video file: a second pass that copies the video
(and original audio) packets and adds an audio track (AAC; Opus in WebM) with each cue spoken at its time."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamvis.errors import OutputError
from streamvis.frame import Result
from streamvis.narration.speech import resample, synthesize
from streamvis.sinks.captions import spoken_seconds
from streamvis.sinks.containers import output_format
from streamvis.sinks.video import VideoWriter

log = logging.getLogger(__name__)
RATE = 48_000


def narration_pcm(cues: list[tuple[float, float, str]], duration_s: float, voice: str,
                  words_per_minute: int) -> np.ndarray:
    """int16 mono at 48 kHz, `duration_s` long (or longer, for a last cue that runs over), speech at cue starts."""
    track = np.zeros(int(duration_s * RATE) + 1, np.int16)
    for start, _end, text in cues:
        samples, rate = synthesize(text, voice, words_per_minute)
        speech = resample(samples, rate, RATE)
        at = int(start * RATE)
        if at + len(speech) > len(track):
            track = np.concatenate([track, np.zeros(at + len(speech) - len(track), np.int16)])
        track[at:at + len(speech)] = speech  # a cue that overlaps the next is cut off by it
    return track


def mux_audio_description(video: Path, cues: list[tuple[float, float, str]], voice: str = "en",
                          words_per_minute: int = 165) -> None:
    """Rewrite `video` with an added audio track (`title=Audio description`; AAC, or Opus in WebM) speaking
    `cues`."""
    fmt = output_format(video)
    tmp = video.with_name(f"{video.stem}.narrated.tmp{video.suffix}")
    try:
        with av.open(str(video)) as src:
            duration = float(src.duration / av.time_base) if src.duration else max((c[1] for c in cues), default=0)
            pcm = narration_pcm(cues, duration, voice, words_per_minute)
            with av.open(str(tmp), "w", format=fmt.muxer, options=fmt.options) as dst:
                mapping = {}
                for stream in src.streams:
                    if stream.type in ("video", "audio"):
                        mapping[stream.index] = dst.add_stream_from_template(stream)
                narration: Any = dst.add_stream(fmt.audio_codec, rate=RATE)
                narration.layout = "mono"
                narration.metadata["title"] = "Audio description"
                narration.metadata["language"] = "eng"
                for packet in src.demux(*[s for s in src.streams if s.index in mapping]):
                    if packet.size == 0:  # the demuxer's final empty packet (MKV packets may lack dts)
                        continue
                    packet.stream = mapping[packet.stream.index]
                    dst.mux(packet)
                step = 1024
                for offset in range(0, len(pcm), step):
                    frame = av.AudioFrame.from_ndarray(pcm[None, offset:offset + step], format="s16", layout="mono")
                    frame.sample_rate = RATE
                    frame.pts = offset
                    frame.time_base = Fraction(1, RATE)
                    for packet in narration.encode(frame):
                        dst.mux(packet)
                for packet in narration.encode():
                    dst.mux(packet)
        os.replace(tmp, video)
    except (OSError, av.FFmpegError) as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot add the audio-description track to {video}: {exc}") from None


class AudioDescriptionTrack:
    """A sink that collects the narration and, when closed after the video writer (`Sinks` closes in order), adds
    it to that file as the audio-description track. Nothing is added when the video holds no frame or nothing was
    said."""

    def __init__(self, video: VideoWriter, voice: str = "en", words_per_minute: int = 165) -> None:
        self.video = video
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.cues: list[tuple[float, float, str]] = []

    def write(self, result: Result) -> None:
        description = result.description
        if description is not None:
            end = description.pts + spoken_seconds(description.text, self.words_per_minute)
            self.cues.append((description.pts, end, description.text))

    def close(self) -> None:
        self.video.close()  # no-op when already closed; the track is muxed into the finished file
        if self.cues and self.video.frames:
            mux_audio_description(self.video.path, self.cues, self.voice, self.words_per_minute)
