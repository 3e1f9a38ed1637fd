"""The check's tables: kept as they are filled, written out (Markdown and JSON) after every section, so a run cut
short still leaves what it measured; and the clock every section checks against the whole run's budget."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Deadline:
    """The run's budget: sections ask how much is left before starting something long."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


@dataclass(slots=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(list(row))

    def markdown(self) -> str:
        def cell(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
            return "" if value is None else str(value)

        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


class Report:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.tables: list[Table] = []
        out.mkdir(parents=True, exist_ok=True)

    def table(self, title: str, columns: list[str]) -> Table:
        table = Table(title, columns)
        self.tables.append(table)
        return table

    def write(self) -> None:
        text = "# streamvis GPU check\n\n" + "\n".join(t.markdown() for t in self.tables)
        (self.out / "gpu_check.md").write_text(text, encoding="utf-8")
        data = [{"title": t.title, "columns": t.columns, "rows": t.rows, "notes": t.notes} for t in self.tables]
        (self.out / "gpu_check.json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")


def p50_p95(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
