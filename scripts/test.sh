#!/usr/bin/env bash
# Sets up .venv with the test tools, then runs ruff, mypy and the test suite.
# Extra arguments go to pytest (for example: scripts/test.sh -k yolox).
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMVIS_EXTRAS=test scripts/setup.sh
# The browser tests drive Debian's chromium (never Playwright's own download); speech uses espeak-ng.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null
fi
# Tests that need ../shared (real media and weights) run when it is there.
if [ -d ../shared/models ]; then export STREAMVIS_MODELS_DIR="${STREAMVIS_MODELS_DIR:-$(cd ../shared/models && pwd)}"; fi
.venv/bin/ruff check streamvis tests benchmarks clients
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
