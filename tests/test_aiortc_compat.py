"""aiortc is changed in one place (`streamvis.server.aiortc_compat`), when a server starts, never on import; an
aiortc without what a patch relies on fails loudly, naming the patch; the loopback ICE rule lets the Python
client watch a server on 127.0.0.1 where loopback is the only interface."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiortc.rtcrtpsender import RTCRtpSender

from streamvis.server import aiortc_compat
from streamvis.server.aiortc_compat import MARK, PATCHES, AiortcIncompatible

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_aiortc_has_everything_the_patches_rely_on() -> None:
    aiortc_compat.check()
    assert {p.name for p in PATCHES} == {"dtls-rsa-peers", "dtls-server-role", "encoder-latency",
                                         "keyframe-requests", "rtp-origin", "loopback-ice"}
    assert all(p.reason and p.needs for p in PATCHES)


def test_a_missing_attribute_fails_naming_the_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(AiortcIncompatible, match=r"patch 'keyframe-requests' needs "
                                                 r"aiortc.rtcrtpsender:RTCRtpSender._send_keyframe"):
        aiortc_compat.apply()


def test_a_sender_that_no_longer_keeps_its_timestamp_fails_naming_the_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    def init_without_it(self: RTCRtpSender, track: object, transport: object) -> None:
        self._track = track

    monkeypatch.setattr(RTCRtpSender, "__init__", init_without_it)
    with pytest.raises(AiortcIncompatible, match="patch 'rtp-origin'"):
        aiortc_compat.check()


def test_importing_the_server_patches_nothing_and_starting_it_patches_once() -> None:
    code = """
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpsender import RTCRtpSender
import aioice.ice
import streamvis.server.routes, streamvis.server.serve, streamvis.server.video_out  # the whole server
MARK = "_streamvis_patch"
targets = lambda: [H264Encoder.encode, RTCRtpSender._send_keyframe, aioice.ice.get_host_addresses]
assert not any(getattr(t, MARK, False) for t in targets()), "patched on import"
from streamvis.server.hub import ServerSettings, StreamHub
StreamHub({}, ServerSettings())
first = targets()
assert all(getattr(t, MARK, False) for t in first[:2]), "not patched at start"
StreamHub({}, ServerSettings())
assert targets() == first, "patched twice"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
    assert MARK == "_streamvis_patch"


def test_the_loopback_rule_offers_127_0_0_1_alone_or_when_nothing_else() -> None:
    import aioice.ice

    aiortc_compat.use_loopback_ice(only=True)
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
    aiortc_compat.use_loopback_ice(only=False)
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)  # the machine's, or 127.0.0.1
    aiortc_compat.use_loopback_ice(only=True)  # as the other tests of this process expect
    assert aiortc_compat.is_loopback("127.0.0.1") and aiortc_compat.is_loopback("localhost")
    assert aiortc_compat.is_loopback("[::1]") and not aiortc_compat.is_loopback("10.77.0.1")


def test_the_python_client_watches_a_server_where_loopback_is_the_only_interface(tmp_path: Path,
                                                                                  models_dir: Path) -> None:
    """In a network namespace holding only `lo` (a container's case), a server on 127.0.0.1 and the client as a
    user runs it: frames arrive (aioice alone would offer the client no candidate at all)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI needs root and unshare -n (util-linux)")
        pytest.skip("needs root and unshare")
    exe = Path(sys.executable).parent / "streamvis"
    client = ROOT / "clients" / "python" / "streamvis_client.py"
    script = f"""
set -u
ip link set lo up
"{exe}" serve --source "synthetic:?w=160&h=96&fps=15" --port 8796 --models-dir "{models_dir}" \
    > "{tmp_path}/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do "{sys.executable}" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8796/healthz', \
timeout=2)" > /dev/null 2>&1 && break; sleep 0.3; done
"{sys.executable}" "{client}" http://127.0.0.1:8796 --frames 10 --json
status=$?
kill $server
exit $status
"""
    result = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + (tmp_path / "serve.log").read_text()
    assert "10 frames" in result.stderr
