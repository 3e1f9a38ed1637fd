"""JSONL: one line per frame, written as frames complete, so an interrupted run keeps what it made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamvis.errors import OutputError, reason
from streamvis.frame import Result
from streamvis.serialize import result_to_json


class EventsWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", encoding="utf-8", buffering=1 << 16)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {reason(exc)}") from exc
        self.lines = 0

    def write(self, result: Result) -> None:
        self.write_record(result_to_json(result))

    def write_record(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.lines += 1

    def close(self) -> None:
        self._file.close()
