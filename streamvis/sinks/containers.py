"""The output containers streamvis writes, chosen by the output file's name, and the codecs each carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamvis.errors import ConfigError


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """An FFmpeg muxer with the video codec streamvis encodes into it and the audio it can carry."""

    muxer: str
    video_codec: str
    audio_copied: frozenset[str]  # audio codecs copied packet for packet
    audio_codec: str  # what other audio (and the narration track) is encoded to
    options: dict[str, str] = field(default_factory=dict)


_MP4_AUDIO = frozenset({"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"})
_FASTSTART = {"movflags": "+faststart"}  # the index first: browsers play while downloading

OUTPUT_FORMATS: dict[str, OutputFormat] = {
    ".mp4": OutputFormat("mp4", "libx264", _MP4_AUDIO, "aac", _FASTSTART),
    ".mov": OutputFormat("mov", "libx264", _MP4_AUDIO | {"pcm_s16le", "pcm_s24le"}, "aac", _FASTSTART),
    ".mkv": OutputFormat("matroska", "libx264", _MP4_AUDIO | {"vorbis", "pcm_s16le", "pcm_s24le", "dts"}, "aac"),
    ".webm": OutputFormat("webm", "libvpx-vp9", frozenset({"opus", "vorbis"}), "libopus"),
}
#: names that ask for a video file in a container streamvis does not write (AVI has no presentation timestamps)
_OTHER_VIDEO_SUFFIXES = frozenset({".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp",
                                   ".ogv", ".gif", ".m4v", ".y4m"})


def supported_names() -> str:
    return ", ".join(OUTPUT_FORMATS)


def output_format(path: Path) -> OutputFormat:
    """The format for an output file named `path`; a `ConfigError` for a video suffix streamvis does not write."""
    suffix = path.suffix.lower()
    if suffix in OUTPUT_FORMATS:
        return OUTPUT_FORMATS[suffix]
    raise ConfigError(f"--output {path}: streamvis writes {supported_names()} files, not {suffix or 'no suffix'}")


def is_video_name(path: Path) -> bool:
    """Whether `path` names a video file (streamvis's or another container's) rather than a folder."""
    suffix = path.suffix.lower()
    return suffix in OUTPUT_FORMATS or suffix in _OTHER_VIDEO_SUFFIXES
