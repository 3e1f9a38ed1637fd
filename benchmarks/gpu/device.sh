#!/usr/bin/env bash
# What the one device call runs (carry: [".whl"]): installs the carried wheels beside the machine's own packages,
# then the check, with its tables in $OUT. Usage there: bash benchmarks/gpu/device.sh [check.py options]
set -uo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 3; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "${OUT:-/tmp}/nvidia-smi.txt" 2>&1
python3 benchmarks/gpu/check.py --out "${OUT:-out/gpu-check}" "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
