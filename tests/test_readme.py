"""The README's main command runs as written (outputs redirected to a temporary folder)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from support import ROOT, run_cli


def test_readme_main_command_runs(person_video: Path, models_dir: Path, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("scripts/streamvis process "))
    args = shlex.split(line)[1:]
    assert args[:2] == ["process", "../shared/media/videos/intel_one-by-one-person-detection.mp4"]
    args = [str(tmp_path / Path(a).name) if a.startswith("out/") else a for a in args]
    result = run_cli(*args, "--quiet")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "people.jsonl").read_text().splitlines()
    assert len(lines) == 1394 and json.loads(lines[0])["frame_index"] == 0
    assert (tmp_path / "people.mp4").stat().st_size > 100_000
    assert "scripts/test.sh" in readme and (ROOT / ".ci" / "run").read_text().count("scripts/test.sh") == 1
