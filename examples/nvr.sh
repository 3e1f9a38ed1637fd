#!/usr/bin/env bash
# An NVR on a small box: several cameras, each annotated in the browser and recorded as MP4 + JSONL segments
# (recordings/<camera>/...), a new pair every SEGMENT_S seconds: a camera's own packets copied, no re-encoding.
# Each camera is detected at most DETECT_FPS times a second, and only while something moves (motion gating, on
# by default in serve); viewers and recording share each camera's pipeline; a slow disk costs recorded frames,
# never live latency.
#   CAMERAS="rtsp://cam1/stream rtsp://cam2/stream" examples/nvr.sh
set -euo pipefail
sources=()
for camera in ${CAMERAS:-0}; do sources+=(--source "$camera"); done
exec streamvis serve "${sources[@]}" --set "detector.fps=${DETECT_FPS:-5}" \
    --record "${RECORDINGS:-recordings}" --record-segment-s "${SEGMENT_S:-300}" \
    --port "${PORT:-8080}" ${MODELS_DIR:+--models-dir "$MODELS_DIR"}
