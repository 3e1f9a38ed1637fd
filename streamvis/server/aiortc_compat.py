"""Every change streamvis makes to aiortc and aioice, and every private part of them it uses, in one place.

`apply()` is called once when a server starts (`StreamHub`) and by the Python client; importing streamvis changes
nothing. Each `Patch` says why it exists and what of aiortc it relies on; `check()` finds what is gone and names
the patch, so a new aiortc fails at once and loudly (`tests/test_aiortc_compat.py`), never with a viewer that
silently gets no video. Checked on aiortc 1.16.0 and aioice 0.13.0 (`pyproject.toml` pins 1.16.x and 0.13.x).

The loopback ICE rule (`use_loopback_ice`) is shared by the server and the client: aioice offers no loopback
address as a host candidate, so a peer whose only interface is loopback (a network namespace, a container)
would offer none and get no media. A server bound to loopback and a client of a server on loopback offer
127.0.0.1 only (nothing leaves the machine); otherwise aioice's addresses, and 127.0.0.1 when it finds none.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import av

VERSIONS_CHECKED = "aiortc 1.16.0, aioice 0.13.0"

# ECDSA first (our own certificate), then RSA for peers whose certificate is RSA; all forward-secret AEAD or
# the SHA-1 CBC suites WebRTC stacks still offer.
CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
           b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:"
           b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA")

MARK = "_streamvis_patch"  # set on each replacement function, so that applying twice changes nothing


class AiortcIncompatible(RuntimeError):
    """The installed aiortc/aioice lacks something a patch relies on."""


@runtime_checkable
class ForwardsKeyframeRequests(Protocol):
    """A track whose frames are encoded elsewhere (`video_out.PacketTrack`): a receiver's PLI goes to it."""

    def keyframe_requested(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Patch:
    name: str
    reason: str
    needs: tuple[str, ...]  # "module:Class.attribute" it replaces or reads
    apply: Callable[[], None] | None = None  # None: a private part read, nothing replaced


def _resolve(need: str) -> Any:
    module_name, _, path = need.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in path.split("."):
        target = getattr(target, part)
    return target


def _replace(need: str, make: Callable[[Any], Callable[..., Any]]) -> None:
    module_name, _, path = need.partition(":")
    owner_path, _, attribute = path.rpartition(".")
    owner = _resolve(f"{module_name}:{owner_path}") if owner_path else importlib.import_module(module_name)
    original = getattr(owner, attribute)
    if getattr(original, MARK, False):
        return
    replacement = make(original)
    setattr(replacement, MARK, True)
    setattr(owner, attribute, replacement)


def _accept_rsa_peers() -> None:
    def make(original: Any) -> Callable[..., Any]:
        def create_ssl_context(self: Any, srtp_profiles: Any) -> Any:
            context = original(self, srtp_profiles)
            context.set_cipher_list(CIPHERS)
            return context
        return create_ssl_context

    _replace("aiortc.rtcdtlstransport:RTCCertificate._create_ssl_context", make)


def _time_encoders() -> None:
    for need in ("aiortc.codecs.h264:H264Encoder.encode", "aiortc.codecs.vpx:Vp8Encoder.encode"):
        def make(original: Any) -> Callable[..., Any]:
            def encode(self: Any, frame: av.VideoFrame, force_keyframe: bool = False) -> Any:
                out = original(self, frame, force_keyframe)
                tag = getattr(frame, "opaque", None)  # (stream stats, decode time) set by `ResultTrack`
                if isinstance(tag, tuple) and len(tag) == 2:
                    stats, decoded_at = tag
                    stats.stage("server_latency", (time.monotonic() - decoded_at) * 1e3)
                return out
            return encode

        _replace(need, make)


def _forward_keyframe_requests() -> None:
    def make(original: Any) -> Callable[..., Any]:
        def send_keyframe(self: Any) -> None:
            original(self)
            if isinstance(self.track, ForwardsKeyframeRequests):
                self.track.keyframe_requested()
        return send_keyframe

    _replace("aiortc.rtcrtpsender:RTCRtpSender._send_keyframe", make)


_loopback_only = False


def _host_addresses(original: Callable[..., list[str]]) -> Callable[..., list[str]]:
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if _loopback_only:
            return ["127.0.0.1"] if use_ipv4 else []
        found = list(original(use_ipv4, use_ipv6))
        return found or (["127.0.0.1"] if use_ipv4 else [])
    return get_host_addresses


def _loopback_ice() -> None:
    _replace("aioice.ice:get_host_addresses", _host_addresses)


PATCHES = (
    Patch("dtls-rsa-peers", "aiortc offers only ECDHE-ECDSA suites: as DTLS client it cannot reach a peer with an "
          "RSA certificate (GStreamer 1.22's webrtcbin, GnuTLS builds of FFmpeg): the RSA suites are added",
          ("aiortc.rtcdtlstransport:RTCCertificate._create_ssl_context",), _accept_rsa_peers),
    Patch("dtls-server-role", "an offer with a=setup:actpass is answered passive (we are the DTLS server, so the "
          "suite follows our ECDSA certificate): `dtls.answer_as_dtls_server` sets the transports' role",
          ("aiortc.rtcdtlstransport:RTCDtlsTransport._set_role",)),
    Patch("encoder-latency", "aiortc encodes VP8 (and per-viewer H.264) inside its RTP sender: its encoders are "
          "wrapped to record each frame's decode-to-packet time (server_latency)",
          ("aiortc.codecs.h264:H264Encoder.encode", "aiortc.codecs.vpx:Vp8Encoder.encode"), _time_encoders),
    Patch("keyframe-requests", "aiortc answers a receiver's PLI in its own encoder, which a packet track bypasses: "
          "the request is passed on to the shared H.264 encoder",
          ("aiortc.rtcrtpsender:RTCRtpSender._send_keyframe",), _forward_keyframe_requests),
    Patch("rtp-origin", "the random origin aiortc adds to RTP timestamps is read off the sender's last timestamp "
          "(name-mangled), so that data-channel messages name the frame a viewer sees",
          ("aiortc.rtcrtpsender:RTCRtpSender.__init__",)),
    Patch("loopback-ice", "aioice leaves loopback out of its host candidates: see `use_loopback_ice`",
          ("aioice.ice:get_host_addresses",), _loopback_ice),
)


def check() -> None:
    """Raise `AiortcIncompatible` naming the first patch whose aiortc/aioice part is gone."""
    for patch in PATCHES:
        for need in patch.needs:
            try:
                target = _resolve(need)
            except (ImportError, AttributeError) as exc:
                raise AiortcIncompatible(f"aiortc compatibility patch '{patch.name}' needs {need}, which the "
                                         f"installed aiortc/aioice lacks (checked on {VERSIONS_CHECKED}): "
                                         f"{exc}") from exc
            if patch.name == "rtp-origin" and "self.__rtp_timestamp" not in inspect.getsource(target):
                raise AiortcIncompatible(f"aiortc compatibility patch 'rtp-origin' reads RTCRtpSender's "
                                         f"__rtp_timestamp, which the installed aiortc no longer sets (checked on "
                                         f"{VERSIONS_CHECKED})")


def apply() -> None:
    """Check, then apply every patch (idempotent): at server start, and by the Python client."""
    check()
    for patch in PATCHES:
        if patch.apply is not None:
            patch.apply()


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def use_loopback_ice(only: bool) -> None:
    """`only`: offer 127.0.0.1 alone as ICE host candidate (a server bound to loopback, a client of one);
    otherwise aioice's addresses, and 127.0.0.1 when it finds none."""
    global _loopback_only
    _loopback_only = only
    _loopback_ice()


def sent_rtp_timestamp(sender: Any) -> int | None:
    """The RTP timestamp `sender` (an `RTCRtpSender`) last sent, None before its first packet (`rtp-origin`)."""
    value = getattr(sender, "_RTCRtpSender__rtp_timestamp", None)
    return int(value) if value else None
