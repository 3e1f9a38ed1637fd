"""Copies the input's audio into the output file, interleaved with the video as it is written.

Codecs the output container carries are copied packet for packet; others are transcoded to its audio codec
(AAC; Opus for WebM).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import av

from streamvis.sinks.containers import OutputFormat

log = logging.getLogger(__name__)


class AudioCopier:
    """Reads the first audio stream of `path` in a demuxer of its own and muxes it up to a given time."""

    def __init__(self, path: str, output: Any, output_format: OutputFormat) -> None:
        self._input = av.open(path)
        self._in_stream = self._input.streams.audio[0]
        self._output = output
        name = self._in_stream.codec_context.name
        self.copy = name in output_format.audio_copied
        if self.copy:
            self._out_stream = output.add_stream_from_template(self._in_stream)
        else:
            codec = output_format.audio_codec
            rate = 48000 if codec == "libopus" else self._in_stream.sample_rate  # Opus runs at 48 kHz
            self._out_stream = output.add_stream(codec, rate=rate)
            self._out_stream.layout = self._in_stream.layout.name
            log.info("audio %s is not carried by %s: transcoding it to %s", name, output_format.muxer, codec)
        self._packets: Iterator[Any] = self._input.demux(self._in_stream)
        self._pending: Any = None
        self.done = False

    def _mux(self, packet: Any) -> None:
        if self.copy:
            packet.stream = self._out_stream
            self._output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # let the encoder's sample count drive timing
            for out_packet in self._out_stream.encode(frame):
                self._output.mux(out_packet)

    def feed_until(self, pts: float | None) -> None:
        """Mux audio packets that start at or before `pts` seconds (all remaining when None)."""
        while not self.done:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets)
                except (StopIteration, av.error.FFmpegError):
                    self.done = True
                    break
                if packet.size == 0:  # the demuxer's final empty packet
                    continue
            if pts is not None and packet.pts is not None and float(packet.pts * packet.time_base) > pts:
                self._pending = packet
                return
            self._pending = None
            self._mux(packet)

    def close(self, until_pts: float | None) -> None:
        """Mux what is left up to `until_pts` (None: everything) and flush the encoder."""
        try:
            self.feed_until(until_pts)
            if not self.copy:
                for out_packet in self._out_stream.encode(None):
                    self._output.mux(out_packet)
        finally:
            self._input.close()
