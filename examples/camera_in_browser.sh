#!/usr/bin/env bash
# A webcam or an RTSP camera, annotated, in the browser: open http://127.0.0.1:8080/ once it says "serving".
#   examples/camera_in_browser.sh                               # the first webcam (/dev/video0)
#   SOURCE=rtsp://user:pass@192.168.1.64/stream1 examples/camera_in_browser.sh
# PORT (8080) and MODELS_DIR (a local models folder, for offline machines) are optional.
set -euo pipefail
exec streamvis serve --source "${SOURCE:-0}" --port "${PORT:-8080}" ${MODELS_DIR:+--models-dir "$MODELS_DIR"}
