#!/usr/bin/env bash
# Fetches the wheels the lent GPU machine lacks (wheels.txt) into .whl/ at the project root, for Python 3.12 on
# manylinux x86-64, and keeps .whl/ out of git. Run here, before the device call that carries .whl.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    -r <(grep -v '^#' benchmarks/gpu/wheels.txt)
du -sh .whl
