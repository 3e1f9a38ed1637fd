"""The prepared GPU check's dry run (`benchmarks/gpu/check.py --quick --device cpu`): the same script a lent GPU
machine runs, on tiny models, so that it still runs whole when a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import ROOT

SECTIONS = ["Environment", "tests/test_gpu.py", "SAM 2 processing parity", "SAM 2.1 image encoder",
            "SAM 2.1-tiny propagation step", "Florence-2 <OD>", "EdgeTAM propagation step", "streamvis process",
            "Density"]


def test_the_dry_run_fills_every_table(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "check.py"), "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = {t["title"]: t for t in json.loads((tmp_path / "gpu_check.json").read_text())}
    assert not [title for title in tables if title.endswith(": failed")], done.stdout[-3000:]
    for section in SECTIONS:
        (title,) = [t for t in tables if t.startswith(section)]
        table = tables[title]
        if section.startswith("SAM 2 processing parity"):  # needs torchvision, absent here: says so
            assert table["rows"] or any("cannot load" in note for note in table["notes"])
        else:
            assert table["rows"], f"{title}: no rows ({table['notes']})"
    propagation = tables[next(t for t in tables if t.startswith("SAM 2.1-tiny propagation"))]
    assert {row[3] for row in propagation["rows"]} == {"per object", "batched"}
    density = tables[next(t for t in tables if t.startswith("Density"))]
    assert [(row[0], row[1]) for row in density["rows"]] == [(1, "off"), (2, "off"), (1, "on"), (2, "on")]
    assert all(float(row[2].split(" / ")[0]) > 0 for row in density["rows"])  # every stream delivered frames
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.count("### ") == len(tables)
