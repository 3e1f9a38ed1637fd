"""Every read of the environment: deployment settings only (where models and caches live, offline mode).

Behaviour comes from the pipeline configuration; these variables say where things are on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR = "STREAMVIS_MODELS_DIR"  # a local folder of model weights (offline use)
CACHE_DIR = "STREAMVIS_CACHE_DIR"  # replaces ~/.cache/streamvis
OFFLINE = ("HF_HUB_OFFLINE", "STREAMVIS_OFFLINE")  # either one: nothing is downloaded
TOKEN = "STREAMVIS_TOKEN"  # `streamvis serve --token`
VIEW_TOKEN = "STREAMVIS_VIEW_TOKEN"  # `streamvis serve --view-token`
HEAP_TRIM_S = "STREAMVIS_HEAP_TRIM_S"  # `serve`: seconds between handing the C heap's free pages back (0: never)
HEAP_TRIM_DEFAULT_S = 60.0

_TRUE = {"1", "true", "yes", "on"}


def models_dir() -> Path | None:
    """The local models folder, when `STREAMVIS_MODELS_DIR` names one."""
    value = os.environ.get(MODELS_DIR, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """streamvis's cache: `STREAMVIS_CACHE_DIR`, else `$XDG_CACHE_HOME/streamvis`, else `~/.cache/streamvis`."""
    value = os.environ.get(CACHE_DIR, "").strip()
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "streamvis"


def heap_trim_s() -> float:
    """`STREAMVIS_HEAP_TRIM_S` (60 s when unset): how often `serve` hands the C heap's free pages back; 0 never."""
    value = os.environ.get(HEAP_TRIM_S, "").strip()
    if not value:
        return HEAP_TRIM_DEFAULT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"{HEAP_TRIM_S} must be a number of seconds (0: never), got '{value}'")
    return seconds


def offline() -> bool:
    """True when `HF_HUB_OFFLINE` or `STREAMVIS_OFFLINE` is set: only local folders and caches are used."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in OFFLINE)
