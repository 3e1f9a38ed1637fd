"""Narration from a model server that turns slow, fails and comes back, during a live stream: what was said, when.

    .venv/bin/python benchmarks/narration_server.py [--phase-s 15] [--models-dir ../shared/models]

`streamvis serve -p narrate` on the shared person video (looped), with `narrator.type: openai` pointed at a
stand-in chat-completions server on 127.0.0.1 (`streamvis.testing.chat_server`: scripted answers; it shows the
protocol and the handling, not a model's quality). A Python viewer listens to the data channel. The server is
well, then slow (past `narrator.timeout_s`), then failing (500), then well again, `--phase-s` each. Printed: one
row per second (the server's mode, the narrator's state in /streams, requests sent, what was said), a recorded
request (its text and size), and the bytes a caption costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
from results import save_table  # noqa: E402
from serving import free_port, get_json  # noqa: E402
from streamvis_client import watch  # noqa: E402

from streamvis import env  # noqa: E402
from streamvis.server.aiortc_compat import use_loopback_ice  # noqa: E402
from streamvis.testing.chat_server import ChatServer  # noqa: E402

VIDEO = ROOT.parent / "shared" / "media" / "videos" / "intel_one-by-one-person-detection.mp4"
CAPTION = "A person walks to the table on the left."
PHASES = ("ok", "slow", "fail", "ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-s", type=float, default=15.0)
    parser.add_argument("--timeout-s", type=float, default=3.0, help="narrator.timeout_s")
    parser.add_argument("--models-dir", default=env.models_dir() or ROOT.parent / "shared/models")
    args = parser.parse_args()
    use_loopback_ice(only=True)
    console = Console(width=180)
    with ChatServer(answer=CAPTION, slow_s=args.timeout_s + 5) as chat:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = {"narrator.type": "openai", "narrator.model": "llava", "narrator.base_url": chat.base_url,
                    "narrator.timeout_s": args.timeout_s, "narrator.period_s": 4, "narrator.min_gap_s": 2,
                    "narrator.retry_max_s": 8}
        server = subprocess.Popen([str(Path(sys.executable).parent / "streamvis"), "serve", "--source", str(VIDEO),
                                   "--loop", "-p", "narrate", "--port", str(port), "--models-dir", str(args.models_dir),
                                   *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        spoken: list[tuple[float, str]] = []
        rows: list[list[str]] = []
        try:
            for _ in range(120):
                try:
                    if all(s == "live" for s in get_json(url + "/healthz")["streams"].values()):
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            start = time.monotonic()
            total_s = args.phase_s * len(PHASES)
            listener = threading.Thread(target=lambda: asyncio.run(_listen(url, total_s, spoken, start)),
                                        daemon=True)
            listener.start()
            second = 0
            while second < total_s:
                chat.mode = PHASES[min(len(PHASES) - 1, int(second // args.phase_s))]
                time.sleep(max(0.0, start + second + 1 - time.monotonic()))
                second += 1
                health: dict[str, Any] = get_json(url + "/streams")["streams"][0].get("narrator", {})
                said = [text for at, text in spoken if second - 1 <= at < second]
                rows.append([f"{second}", chat.mode, str(health.get("state")), f"{health.get('retry_in_s', 0):g}",
                             str(len(chat.requests)), " / ".join(said)])
            listener.join(timeout=10)
        finally:
            server.terminate()
            try:
                _, log = server.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                _, log = server.communicate()
    table = Table(title=f"serve -p narrate, narrator.type openai on a stand-in server: well, slow (past the "
                        f"{args.timeout_s:g} s deadline), failing (500), well again; {args.phase_s:g} s each")
    for column in ("s", "server", "narrator state (/streams)", "retry in s", "requests", "said in that second"):
        table.add_column(column, justify="left" if column in ("said in that second", "narrator state (/streams)")
                         else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    first = chat.requests[0]
    body = dict(first.body)
    image_b64 = len(first.image_url)
    request_bytes = len(json.dumps(first.body).encode())
    with_caption = sum(CAPTION in text for _, text in spoken)
    warnings = [line for line in log.splitlines() if "narrator:" in line]
    notes = (f"{len(chat.requests)} requests; {len(spoken)} narrations, {with_caption} with the server's caption. "
             f"A request is {request_bytes} bytes, {image_b64} of them the image (a 768x432 frame as a 512 px JPEG, "
             f"quality 80, base64). The server's log lines about the narrator: {warnings}. The recorded request's "
             f"text: {first.user_text!r}; model {body['model']}, max_tokens {body['max_tokens']}.")
    console.print(notes)
    save_table("narration_server", table, notes=notes)


async def _listen(url: str, seconds: float, spoken: list[tuple[float, str]], start: float) -> None:
    def heard(message: dict[str, Any]) -> None:
        if message.get("type") == "narration":
            spoken.append((time.monotonic() - start, str(message.get("text", ""))))

    await watch(url, "intel_one-by-one-person-detection", frames=10**9, timeout_s=seconds, on_message=heard,
                keep_messages=False)


if __name__ == "__main__":
    main()
