#!/usr/bin/env bash
# Spoken descriptions of what a camera sees, for blind and low-vision users: open the page, press "Speak", and
# hear hazards first, arrivals and departures, no repetition; ask a question in the box. The objects narrator
# runs on any CPU (pip install streamvis); a Florence-2 or VLM narrator describes more (streamvis[florence]).
#   examples/narrated_camera.sh                 SOURCE=rtsp://... examples/narrated_camera.sh
set -euo pipefail
exec streamvis serve --source "${SOURCE:-0}" -p narrate --port "${PORT:-8080}" ${MODELS_DIR:+--models-dir "$MODELS_DIR"}
