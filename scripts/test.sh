#!/usr/bin/env bash
# Sets up .venv with the test tools, then runs ruff, mypy and the test suite.
#   scripts/test.sh                        everything (what CI runs)
#   scripts/test.sh --fast                 the unit tier: no browser, no servers, no real media or models, no
#                                          exports (`-m fast`; pyproject.toml says what each marker means)
#   scripts/test.sh --install-system-deps  also install the system packages the suite drives (apt, with sudo
#                                          when not root); CI does this by itself (CI=true)
# Other arguments go to pytest (for example: scripts/test.sh -k yolox). The suite runs on 2 pytest-xdist workers
# (much of it waits on servers, browsers and subprocesses); -n 0 (or STREAMVIS_TEST_WORKERS=0) runs it in one
# process, -n N on N. A module's tests run on one worker, one after another (--dist loadscope), so its module-scoped
# fixtures are made once; each worker's torch takes its share of the cores (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
install_system=0; [ "${CI:-}" = "true" ] && install_system=1
args=()
for arg in "$@"; do
    case "$arg" in
        --fast) args+=(-m fast) ;;
        --install-system-deps) install_system=1 ;;
        *) args+=("$arg") ;;
    esac
done
STREAMVIS_EXTRAS=test scripts/setup.sh
# The browser tests drive Debian's chromium (never Playwright's own download); speech uses espeak-ng; the RTSP
# tests run GStreamer's rtsp-server with the system Python (python3-gi).
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
# the WebRTC interop tests run GStreamer's webrtcbin (libnice) in a network namespace.
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstWebRTC', '1.0')" \
        >/dev/null 2>&1 || ! command -v gst-inspect-1.0 >/dev/null 2>&1 || ! gst-inspect-1.0 x264enc >/dev/null 2>&1 \
        || ! gst-inspect-1.0 nicesrc >/dev/null 2>&1; then
    missing="$missing python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base"
    missing="$missing gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad"
    missing="$missing gstreamer1.0-nice gir1.2-gst-plugins-bad-1.0"
fi
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
# the SFU tests fan a stream out through Janus (its VideoRoom), in a network namespace too.
command -v janus >/dev/null 2>&1 || missing="$missing janus"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ] && [ "$install_system" = "1" ]; then
    SUDO=""; [ "$(id -u)" != "0" ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null
elif [ -n "$missing" ]; then
    echo "scripts/test.sh: missing system packages:$missing (tests that drive them will fail or skip;" \
         "scripts/test.sh --install-system-deps installs them with apt)" >&2
fi
# Third-party WebRTC clients for the interop tests (werift, whip-whep), pinned by tests/clients/package-lock.json.
if command -v npm >/dev/null 2>&1 && { [ ! -d tests/clients/node_modules/werift ] \
        || [ tests/clients/package-lock.json -nt tests/clients/node_modules ]; }; then
    (cd tests/clients && npm ci --no-audit --no-fund --silent)
fi
# Tests that need ../shared (real media and weights) run when it is there.
if [ -d ../shared/models ]; then export STREAMVIS_MODELS_DIR="${STREAMVIS_MODELS_DIR:-$(cd ../shared/models && pwd)}"; fi
.venv/bin/ruff check streamvis tests benchmarks clients examples docs
.venv/bin/mypy
# the docs site: broken links and missing pages fail (the references are generated from the code: docs/hooks.py)
site=$(mktemp -d); NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q -d "$site"; rm -rf "$site"
exec .venv/bin/python -m pytest -p no:cacheprovider -n "${STREAMVIS_TEST_WORKERS:-2}" --dist loadscope ${args[@]+"${args[@]}"}
