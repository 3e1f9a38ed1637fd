"""Offline text-to-speech with espeak-ng (Debian's `espeak-ng` package): text to 16-bit mono PCM.

espeak-ng is small, fast (tens of milliseconds a sentence on a CPU), fully offline and speaks 100+ languages;
a neural TTS would sound better but costs seconds a sentence on this hardware.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

from streamvis.errors import StreamvisError


class SpeechError(StreamvisError):
    """Speech could not be synthesised (espeak-ng missing or failing)."""


def espeak_path() -> str:
    path = shutil.which("espeak-ng") or shutil.which("espeak")
    if path is None:
        raise SpeechError("speech needs espeak-ng: install it (Debian/Ubuntu: apt install espeak-ng) "
                          "or set narrator.speech: false")
    return path


def synthesize(text: str, voice: str = "en", words_per_minute: int = 165) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample rate) for `text`."""
    try:
        done = subprocess.run([espeak_path(), "--stdout", "-v", voice, "-s", str(words_per_minute), text],
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpeechError(f"espeak-ng failed: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        raise SpeechError(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip() or 'no audio'}")
    with wave.open(io.BytesIO(done.stdout)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return samples, rate


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Linear resampling of int16 mono (speech does not need better)."""
    if rate == target_rate or len(samples) == 0:
        return samples
    count = round(len(samples) * target_rate / rate)
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples.astype(np.float32)).astype(np.int16)


def rms(samples: np.ndarray) -> float:
    """Root-mean-square level of int16 samples, 0..1 of full scale."""
    if len(samples) == 0:
        return 0.0
    return float(np.sqrt(np.mean((samples.astype(np.float64) / 32768.0) ** 2)))
