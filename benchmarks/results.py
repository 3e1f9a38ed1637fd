"""Every benchmark's table as a file: `benchmarks/results/<name>.md` (the table, and the machine, commit, date and
command it came from) and `<name>.json` (the same as data). The docs include the .md files, so a figure in the
docs always says where it was measured, and a stale one shows its date.

    from results import save_table   # in a script of benchmarks/ (its folder is on sys.path)
    save_table("offline", table)     # the rich Table the script prints
"""

from __future__ import annotations

import datetime
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from streamvis.doctor import cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def commit() -> str:
    """The checkout's commit, `+changes` when the tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def gpu() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none"
    found = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip().replace("\n", "; ") if found.returncode == 0 else "none"


def machine() -> dict[str, Any]:
    info = cpu()
    return {"cpu": info["model"], "cores": info["cores"], "flags": info["flags"], "int8_class": info["int8_class"],
            "gpu": gpu()}


def _cells(table: Table) -> tuple[list[str], list[list[str]]]:
    headers = [str(column.header).replace("\n", " ") for column in table.columns]
    columns = [[Text.from_markup(cell).plain if isinstance(cell, str) else str(cell) for cell in column._cells]
               for column in table.columns]
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return headers, rows


def save_table(name: str, table: Table, notes: str = "", data: dict[str, Any] | None = None) -> Path:
    """Write `table` with where it was measured to `benchmarks/results/<name>.md` and `.json` (with `data`, what the
    table shows only in part, in the .json alone); returns the .md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    headers, rows = _cells(table)
    where = machine()
    stamp = {"name": name, "title": str(table.title or name), "machine": where, "commit": commit(),
             "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "command": shlex.join([Path(sys.executable).name, *sys.argv]), "headers": headers, "rows": rows,
             "notes": notes, **({"data": data} if data else {})}
    (RESULTS / f"{name}.json").write_text(json.dumps(stamp, indent=2) + "\n")
    flags = " ".join(where["flags"]) or "none of note"
    lines = [f"**{stamp['title']}**", "",
             f"Measured {stamp['date']} at commit `{stamp['commit']}` on {where['cpu']} ({where['cores']} cores, "
             f"{flags}, int8 class {where['int8_class']}; GPU: {where['gpu']}) by `{stamp['command']}`.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path
