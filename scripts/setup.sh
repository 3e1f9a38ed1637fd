#!/usr/bin/env bash
# Creates .venv and installs streamvis into it. Idempotent: a second run installs nothing new.
#   STREAMVIS_GPU=1 scripts/setup.sh   -> onnxruntime-gpu instead of onnxruntime (never both)
#   STREAMVIS_EXTRAS=test              -> also the test tools (scripts/test.sh sets this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
runtime=cpu; other=onnxruntime-gpu
if [ "${STREAMVIS_GPU:-0}" = "1" ]; then runtime=gpu; other=onnxruntime; fi
# torch first, pinned, so that nothing later resolves another torch (a CUDA build is GBs).
# On a GPU machine install the CUDA torch you want before running this script.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "torch==2.13.0"
fi
extras="$runtime"
[ -n "${STREAMVIS_EXTRAS:-}" ] && extras="$extras,$STREAMVIS_EXTRAS"
# The two onnxruntime builds own one module: remove the other before installing ours.
if .venv/bin/python -m pip show --quiet "$other" >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes "$other" onnxruntime onnxruntime-gpu
fi
stamp=".venv/.streamvis-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "${PIP[@]}" -e ".[$extras]"
    touch "$stamp"
fi
