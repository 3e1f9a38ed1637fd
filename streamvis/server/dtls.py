"""DTLS interop for aiortc peers: any certificate type, any `a=setup` the other side offers.

aiortc offers only ECDHE-ECDSA cipher suites. As DTLS client it cannot reach a peer holding an RSA certificate
(GStreamer 1.22's `webrtcbin` default, FFmpeg/PyAV built with GnuTLS): "no shared cipher". Two fixes:

- `answer_as_dtls_server(pc, offer_sdp)` (here): when the offer says `a=setup:actpass`, our answer says
  `passive`, so the peer is the DTLS client and the suite follows our (ECDSA) certificate;
- the `dtls-rsa-peers` patch (`aiortc_compat`): the cipher list aiortc gives OpenSSL also holds the ECDHE-RSA
  suites, for the offers that leave us no choice (`a=setup:passive`: we must be the client).
"""

from __future__ import annotations

from aiortc import RTCPeerConnection


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
