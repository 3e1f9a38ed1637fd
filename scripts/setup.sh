#!/usr/bin/env bash
# Creates .venv and installs streamvis into it. Idempotent: a second run installs nothing new.
#   STREAMVIS_GPU=1 scripts/setup.sh   -> onnxruntime-gpu instead of onnxruntime (never both)
#   STREAMVIS_EXTRAS=sam,florence      -> extras (pyproject.toml, streamvis/extras.py); none: the light CPU path
#   STREAMVIS_EXTRAS=test              -> every extra and the test tools (scripts/test.sh sets this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
installed() { .venv/bin/python -m pip show --quiet "$1" >/dev/null 2>&1; }
extras="${STREAMVIS_EXTRAS:-}"
gpu=0; [ "${STREAMVIS_GPU:-0}" = "1" ] && gpu=1 && extras="${extras:+$extras,}gpu"
# torch first, pinned, so that nothing later resolves another torch (a CUDA build is GBs); only for the extras that
# need it (the base install, the CPU path, has none). On a GPU machine install the CUDA torch you want first.
case ",$extras," in
    *,sam,*|*,florence,*|*,vlm,*|*,export,*|*,all,*|*,test,*)
        if ! .venv/bin/python -c "import torch" 2>/dev/null; then "${PIP[@]}" "torch==2.13.0"; fi ;;
esac
# The two onnxruntime builds own one module (streamvis/extras.py): a CPU set-up drops a GPU build left behind.
if [ "$gpu" = "0" ] && installed onnxruntime-gpu; then
    .venv/bin/python -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu
fi
stamp=".venv/.streamvis-installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! .venv/bin/python -c "import onnxruntime" 2>/dev/null; then
    "${PIP[@]}" -e ".${extras:+[$extras]}"
    if [ "$gpu" = "1" ] && installed onnxruntime; then  # the base brought the CPU build beside the GPU one: keep one
        version=$(.venv/bin/python -m pip show onnxruntime-gpu | sed -n 's/^Version: //p')
        .venv/bin/python -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu
        "${PIP[@]}" --no-deps "onnxruntime-gpu==$version"
    fi
    # rapidocr (extra ocr) brings opencv-python-headless beside opencv-python; both own cv2: keep opencv-python
    if installed opencv-python-headless && installed opencv-python; then
        version=$(.venv/bin/python -m pip show opencv-python | sed -n 's/^Version: //p')
        .venv/bin/python -m pip uninstall --quiet --yes opencv-python opencv-python-headless
        "${PIP[@]}" --no-deps "opencv-python==$version"
    fi
    touch "$stamp"
fi
