"""Read a live stream's detections from Python, as a program that reacts to them would: the Python WebRTC client
receives the video and the data channel, and this prints, once a second, how many of each class are in view.

    python examples/read_detections.py http://127.0.0.1:8080 [--stream NAME] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
from streamvis_client import watch


def first_stream(server: str, token: str | None) -> str:
    """The server's first stream (`GET /streams`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"{server}/streams", headers=headers), timeout=10) as answer:
        streams = json.load(answer)["streams"]
    if not streams:
        sys.exit(f"{server} serves no stream yet")
    return str(streams[0]["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("--stream", default=None, help="default: the server's first stream")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    said = {"at": 0.0}

    def on_message(message: dict[str, Any]) -> None:
        if message.get("type") != "frame" or time.monotonic() - said["at"] < 1.0:
            return
        said["at"] = time.monotonic()
        counts = Counter(d["class_name"] for d in message["detections"])
        print(f"frame {message['frame_index']}: " + (", ".join(f"{n} {c}" for c, n in counts.most_common())
                                                     or "nothing in view"), flush=True)

    stream = args.stream or first_stream(args.server, args.token)
    report = asyncio.run(watch(args.server, stream, frames=10**9, timeout_s=args.seconds,
                               token=args.token, on_message=on_message, keep_messages=False))
    print(f"{report.frames} frames, {report.messages} messages in {report.seconds:.1f} s")


if __name__ == "__main__":
    main()
