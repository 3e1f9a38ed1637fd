"""A Janus SFU and a `streamvis serve` side by side in a network namespace of our own, for the fan-out tests and
`benchmarks/fanout.py`. libnice (Janus) ignores loopback, and nothing may use the machine's own addresses, so both
run inside `unshare -n scripts/in_netns.sh ...`: the server on 10.77.0.1, Janus on 10.77.0.2 (a veth pair).
Needs root, `unshare`, and Debian's `janus` package; a source checkout (the scripts live in `scripts/`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER_IP, JANUS_IP = "10.77.0.1", "10.77.0.2"
JANUS_PORT, SERVER_PORT = 8088, 8795
JANUS_API = f"http://{JANUS_IP}:{JANUS_PORT}/janus"
NETNS_ENV = "STREAMVIS_IN_NETNS"


def missing() -> str | None:
    """Why the namespace scenario cannot run here, or None."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare (a network namespace with a veth pair)"
    if shutil.which("janus") is None:
        return "needs Janus (apt-get install janus)"
    return None


def in_namespace() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def run_in_namespace(argv: list[str], timeout_s: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run `python argv...` (this interpreter) in a new network namespace with the veth pair up."""
    command = ["unshare", "-n", str(REPO / "scripts" / "in_netns.sh"), "env", f"{NETNS_ENV}=1", sys.executable,
               *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, **kwargs)  # type: ignore


def janus_room(room: int) -> str:
    """The `--publish` target (and the client's URL) for VideoRoom `room` on this Janus."""
    return f"janus+http://{JANUS_IP}:{JANUS_PORT}/janus?room={room}"


def _wait(check: str, ready: object, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{check} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError, ValueError):
            if callable(ready) and ready():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{check} not ready after {timeout_s:.0f} s: {log.read_text()[-2000:]}")


def _janus_answers() -> bool:
    request = urllib.request.Request(JANUS_API, data=json.dumps({"janus": "info", "transaction": "up"}).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=2) as response:
        return bool(json.load(response).get("janus") == "server_info")


@contextlib.contextmanager
def janus(log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Janus on JANUS_IP (VideoRoom, HTTP API), until the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen([str(REPO / "scripts" / "janus.sh"), JANUS_IP, str(JANUS_PORT), "sv1"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait("janus", _janus_answers, proc, 30, log)
        yield proc
    finally:
        stop(proc)
        with contextlib.suppress(ProcessLookupError):  # whatever of its group is left (never a stray Janus)
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def streamvis_server(log: Path, *args: str, env: dict[str, str] | None = None,
                     ready_s: float = 120) -> Iterator[subprocess.Popen[bytes]]:
    """`streamvis serve` on SERVER_IP with `args`, until the block ends (stopped with SIGINT, as a user would)."""
    exe = Path(sys.executable).parent / "streamvis"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe), "serve", "--host", SERVER_IP, "--port", str(SERVER_PORT),
                                 "--token", "t", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})

    def healthy() -> bool:
        request = urllib.request.Request(f"http://{SERVER_IP}:{SERVER_PORT}/healthz",
                                         headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)

    try:
        _wait("streamvis serve", healthy, proc, ready_s, log)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
