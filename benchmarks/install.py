"""The install a user makes, measured: a fresh virtual environment, `pip install` of this checkout's wheel with no
extras (the CPU path) and with `[all]`, timed, and the size of each environment on disk, in one run.

    .venv/bin/python benchmarks/install.py [--extras all]

pip's cache is kept out (`--no-cache-dir`), so each install fetches what it needs as a new user's would (from
the package index this machine is configured with), then `streamvis process -p detect` runs once in each
environment. torch is the CPU build: it is installed first, pinned, as
`scripts/setup.sh` does, so that the `[all]` figure is the CPU one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import save_table
from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"
MODELS = ROOT.parent / "shared" / "models"  # YOLOX-nano, so that the run needs no download


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def pip(python: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", *args], check=True)
    return time.perf_counter() - started


def install(wheel: Path, extras: str, where: Path) -> tuple[float, float, list[str], bool]:
    """(seconds, MB, what is importable of the heavy parts, whether `process -p detect` runs) for
    `pip install wheel[extras]` in a new venv."""
    venv = where / f"venv-{extras or 'base'}"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    seconds = pip(python, TORCH) if extras else 0.0
    seconds += pip(python, f"{wheel}[{extras}]" if extras else str(wheel))
    probe = ("import importlib.util as u; print(' '.join(m for m in ('torch', 'transformers', 'onnx', 'ray') "
             "if u.find_spec(m)))")
    heavy = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    runs = subprocess.run([str(venv / "bin" / "streamvis"), "process", "synthetic:?w=320&h=192&frames=30", "-o",
                           str(where / f"{extras or 'base'}.mp4"), "-p", "detect", "--models-dir", str(MODELS), "-q"],
                          capture_output=True, text=True, check=False, cwd=where)
    return seconds, size_mb(venv), heavy, runs.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="all", help="the heavy install to compare with the light one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(where), str(ROOT)], check=True)
        (wheel,) = where.glob("streamvis-*.whl")
        table = Table(title="pip install streamvis in a fresh venv (no pip cache)")
        for column in ("install", "seconds", "venv MB", "heavy parts importable", "process -p detect"):
            table.add_column(column, justify="right")
        for extras in ("", args.extras):
            seconds, megabytes, heavy, runs = install(wheel, extras, where)
            name = escape(f"streamvis[{extras}]") if extras else "streamvis"
            table.add_row(name, f"{seconds:.0f}", f"{megabytes:.0f}", " ".join(heavy) or "none",
                          "runs" if runs else "fails")
    Console().print(table)
    save_table("install", table)


if __name__ == "__main__":
    main()
