"""DTLS interop for aiortc peers: any certificate type, any `a=setup` the other side offers.

aiortc offers only ECDHE-ECDSA cipher suites. As DTLS client it cannot reach a peer holding an RSA certificate
(GStreamer 1.22's `webrtcbin` default, FFmpeg/PyAV built with GnuTLS): "no shared cipher". Two fixes, both here:

- `answer_as_dtls_server(pc, offer_sdp)`: when the offer says `a=setup:actpass`, our answer says `passive`, so
  the peer is the DTLS client and the suite follows our (ECDSA) certificate;
- `accept_rsa_peers()`: the cipher list aiortc gives OpenSSL also holds the ECDHE-RSA suites, for the offers that
  leave us no choice (`a=setup:passive`: we must be the client).
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

# ECDSA first (our own certificate), then RSA for peers whose certificate is RSA; all forward-secret AEAD or
# the SHA-1 CBC suites WebRTC stacks still offer.
CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
           b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:"
           b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA")

_patched = False


def accept_rsa_peers() -> None:
    """Let every aiortc DTLS context of this process negotiate with RSA-certificate peers too (idempotent)."""
    global _patched
    if _patched:
        return
    from aiortc.rtcdtlstransport import RTCCertificate

    original = RTCCertificate._create_ssl_context

    def create_ssl_context(self: Any, srtp_profiles: Any) -> Any:
        context = original(self, srtp_profiles)
        context.set_cipher_list(CIPHERS)
        return context

    RTCCertificate._create_ssl_context = create_ssl_context  # type: ignore[method-assign]
    _patched = True


def offered_setup(offer_sdp: str) -> str | None:
    """The offer's `a=setup` value (`actpass`, `active`, `passive`), session- or media-level, first one found."""
    for line in offer_sdp.splitlines():
        if line.startswith("a=setup:"):
            return line.split(":", 1)[1].strip()
    return None


def answer_as_dtls_server(pc: RTCPeerConnection, offer_sdp: str) -> None:
    """After `setRemoteDescription(offer)`, before `createAnswer()`: answer `a=setup:passive` when the offer
    lets us choose, so that we are the DTLS server (aiortc would answer `active`)."""
    if offered_setup(offer_sdp) != "actpass":
        return  # `active`: aiortc is the server already; `passive`: we must be the client
    for transceiver in pc.getTransceivers():
        transceiver.receiver.transport._set_role("server")
    if pc.sctp is not None:
        pc.sctp.transport._set_role("server")
