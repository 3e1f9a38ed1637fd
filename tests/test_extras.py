"""Installs by need: which extra a pipeline needs, the one-line error when it is missing, the one onnxruntime
build, and the CPU path importing no torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, run_cli

from streamvis import extras
from streamvis.config import load_pipeline
from streamvis.errors import ConfigError


@pytest.mark.parametrize(("pipeline", "overrides", "wanted"), [
    ("detect", [], []),
    ("detect", ["narrator.type=objects"], []),
    ("detect", ["segmenter.type=sam2"], [("segmenter.type sam2", "sam")]),
    ("detect", ["segmenter.type=sam3"], [("segmenter.type sam3", "sam")]),
    ("detect", ["narrator.type=vlm"], [("narrator.type vlm", "vlm")]),
    ("detect", ["narrator.type=openai", "narrator.model=llava"], [("narrator.type openai", "openai")]),
    ("segment", [], [("detector.type florence2", "florence"), ("segmenter.type sam2", "sam")]),
    ("narrate", [], [("reader.type rapidocr", "ocr")]),  # text read aloud: PP-OCR from the rapidocr wheel
    ("narrate", ["reader.type=none"], []),
    ("detect", ["embedder.type=clip"], [("embedder.type clip", "search")]),
    ("detect", ["segmenter.type=sam2", "segmenter.backend=onnx"],
     [("segmenter.type sam2", "sam"), ("segmenter.backend onnx (graphs exported on first use)", "export")]),
])
def test_what_each_pipeline_needs(pipeline: str, overrides: list[str], wanted: list[tuple[str, str]]) -> None:
    assert [(n.field, n.extra) for n in extras.needs(load_pipeline(pipeline, overrides))] == wanted


def test_a_missing_extra_is_one_line_naming_field_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = extras.importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    with pytest.raises(ConfigError) as error:
        extras.check_installed(load_pipeline("detect", ["segmenter.type=sam2"]))
    assert str(error.value) == "segmenter.type sam2 needs torch: pip install 'streamvis[sam]'"
    extras.check_installed(load_pipeline("detect"))  # the CPU path needs no extra
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None if name == "rapidocr" else real(name))
    with pytest.raises(ConfigError) as error:
        extras.check_installed(load_pipeline("narrate"))
    assert str(error.value) == ("reader.type rapidocr needs rapidocr: pip install 'streamvis[ocr]' (or --set "
                                "reader.type=none to run without reading text)")


def test_one_onnxruntime_build(monkeypatch: pytest.MonkeyPatch) -> None:
    for present, problem in [({"onnxruntime"}, None), ({"onnxruntime-gpu"}, None),
                             ({"onnxruntime", "onnxruntime-gpu"}, "both installed"), (set(), "not installed")]:
        monkeypatch.setattr(extras, "installed", lambda name, present=present: name in present)
        found = extras.onnxruntime_conflict()
        assert (found is None) if problem is None else (found is not None and problem in found)
    monkeypatch.undo()
    assert extras.onnxruntime_conflict() is None  # this environment holds exactly one


def test_one_opencv_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """rapidocr asks for opencv-python-headless, trackers for opencv-python: both own cv2."""
    for present, problem in [({"opencv-python"}, False), ({"opencv-python-headless"}, False),
                             ({"opencv-python", "opencv-python-headless"}, True)]:
        monkeypatch.setattr(extras, "installed", lambda name, present=present: name in present)
        found = extras.opencv_conflict()
        assert (found is not None and "both installed" in found) if problem else found is None


def test_the_cpu_path_imports_no_torch_or_transformers(tmp_path: Path, models_dir: Path) -> None:
    code = f"""
import sys
from streamvis.cli import main
sys.argv = ["streamvis", "process", "synthetic:?w=160&h=96&frames=5", "-o", "{tmp_path}/o.mp4", "-p", "detect",
            "--models-dir", "{models_dir}", "-q"]
try:
    main()
except SystemExit as end:
    assert end.code in (0, None), end.code
print(sorted(m for m in ("torch", "transformers", "onnx", "pycocotools", "ray") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_doctor_reports_what_this_machine_holds(models_dir: Path) -> None:
    result = run_cli("doctor", "--json", env={"STREAMVIS_MODELS_DIR": str(models_dir)}, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["onnxruntime"]["providers"]["CPUExecutionProvider"] == "usable"  # tried, not only listed
    assert data["cpu"]["int8_class"] in ("vnni", "avx2") and data["cpu"]["cores"] >= 1
    assert data["ffmpeg"]["encoders"]["libx264"] and data["ffmpeg"]["decoders"]["h264"]
    assert "yolox-nano" in data["models_dir"]["models"]
    assert set(data["extras"]) == {"sam", "florence", "vlm", "openai", "eval", "ocr", "search", "export", "ray"}
    assert data["opencv_conflict"] is None  # scripts/setup.sh keeps one OpenCV wheel though rapidocr asks for another
    text = run_cli("doctor", env={"STREAMVIS_MODELS_DIR": str(models_dir)}, timeout=120)
    assert text.returncode == 0 and "int8 class" in text.stdout and "CPUExecutionProvider usable" in text.stdout
