"""Fan-out through Janus, end to end, inside a network namespace (run by tests/test_sfu.py through
`streamvis.testing.sfu.run_in_namespace`): Janus on 10.77.0.2, `streamvis serve` on 10.77.0.1 publishing its
stream into a VideoRoom; several viewers subscribe through Janus and one watches the server directly. Prints one
JSON line per phase: the viewers' reports, then the room after the server stopped.

    python tests/clients/sfu_fanout.py VIDEO MODELS_DIR LOG_DIR VIEWERS [serve args...]
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from streamvis.server.janus import JanusSession
from streamvis.testing import sfu

sys.path.insert(0, str(sfu.REPO / "clients" / "python"))
from streamvis_client import WatchReport, watch, watch_janus

STREAM, ROOM = "people", 4242


async def _publishers() -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        janus = JanusSession(http, sfu.JANUS_API)
        try:
            await janus.open()
            if not (await janus.request({"request": "exists", "room": ROOM})).get("exists"):
                return []
            listed = await janus.request({"request": "listparticipants", "room": ROOM})
            return [p for p in listed.get("participants", []) if p.get("publisher")]
        finally:
            await janus.close()


async def _until_published(timeout_s: float) -> list[dict[str, Any]]:
    for _ in range(int(timeout_s / 0.5)):
        publishers = await _publishers()
        if publishers:
            return publishers
        await asyncio.sleep(0.5)
    return []


def _summary(report: WatchReport) -> dict[str, Any]:
    frame_indices = [m["frame_index"] for m in report.frame_messages]
    return {**{k: v for k, v in asdict(report).items() if not k.endswith("_messages")},
            "frame_messages": len(frame_indices), "distinct_frame_messages": len(set(frame_indices)),
            "detections": sum(len(m.get("detections", [])) for m in report.frame_messages),
            "narration_messages": len(report.narration_messages)}


async def _watch_all(viewers: int, seconds: float) -> dict[str, Any]:
    publishers = await _until_published(60)
    through_janus = [watch_janus(sfu.janus_room(ROOM), STREAM, frames=10**6, timeout_s=seconds)
                     for _ in range(viewers)]
    direct = watch(f"http://{sfu.SERVER_IP}:{sfu.SERVER_PORT}", STREAM, frames=10**6, timeout_s=seconds,
                   token="t", audio=True)
    reports = await asyncio.gather(*through_janus, direct)
    return {"publishers": [p.get("display") for p in publishers],
            "janus": [_summary(r) for r in reports[:-1]], "direct": _summary(reports[-1])}


def main() -> None:
    video, models_dir, log_dir, viewers = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    source = log_dir / f"{STREAM}.mp4"  # the stream id is the file's name
    source.symlink_to(Path(video).resolve())
    serve_args = ["--source", str(source), "--loop", "--models-dir", models_dir,
                  "--publish", f"{STREAM}={sfu.janus_room(ROOM)}", *sys.argv[5:]]
    with sfu.janus(log_dir / "janus.log"):
        with sfu.streamvis_server(log_dir / "serve.log", *serve_args):
            print(json.dumps(asyncio.run(_watch_all(viewers, 10.0))), flush=True)
        print(json.dumps({"publishers_after_stop": [p.get("display") for p in asyncio.run(_publishers())]}),
              flush=True)


if __name__ == "__main__":
    main()
