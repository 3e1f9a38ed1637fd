"""DTLS interop: players and publishers with RSA or ECDSA certificates, offering `actpass`, `active` or
`passive`, all connect to `streamvis serve` (aiortc alone offers ECDSA suites and answers `active`, so an RSA
peer such as GStreamer's webrtcbin or a GnuTLS FFmpeg failed with "no shared cipher")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate, generate_certificate
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_serve import STREAM, Server

from streamvis.server.dtls import accept_rsa_peers, offered_setup
from streamvis.server.serve import restrict_ice_to_loopback


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    from conftest import MODELS, PERSON_VIDEO, _need

    _need(PERSON_VIDEO)
    restrict_ice_to_loopback()
    accept_rsa_peers()  # the test's own peers may hold RSA certificates, as GStreamer's do
    srv = Server("--source", str(PERSON_VIDEO), "--models-dir", str(MODELS), "--loop")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _peer(certificate: str) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048) if certificate == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    pc._RTCPeerConnection__certificates = [RTCCertificate(key=key, cert=generate_certificate(key))]  # type: ignore[attr-defined]
    return pc


async def _exchange(url: str, pc: RTCPeerConnection, setup: str) -> tuple[str, str]:
    """POST our offer (its `a=setup` rewritten to `setup`) as WHIP/WHEP do; returns (answer's setup, Location)."""
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp.replace("a=setup:actpass", f"a=setup:{setup}")
    async with aiohttp.ClientSession() as session, session.post(
            url, data=offer, headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 201, await response.text()
        answer = await response.text()
        location = response.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return offered_setup(answer) or "", location


async def _delete(base: str, location: str) -> int:
    async with aiohttp.ClientSession() as session, session.delete(base + location) as response:
        return response.status


EXPECTED_ANSWER = {"actpass": "passive", "active": "passive", "passive": "active"}


@pytest.mark.parametrize("setup", ["actpass", "active", "passive"])
@pytest.mark.parametrize("certificate", ["rsa", "ecdsa"])
def test_a_player_with_any_certificate_and_setup_connects(server: Server, certificate: str, setup: str) -> None:
    async def play() -> tuple[str, int, int]:
        pc = _peer(certificate)
        pc.addTransceiver("video", direction="recvonly")
        frames: asyncio.Queue[Any] = asyncio.Queue()
        pulling: list[asyncio.Task[None]] = []

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def pull() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        await frames.put(await track.recv())
            pulling.append(asyncio.ensure_future(pull()))

        try:
            answered, location = await _exchange(f"{server.url}/whep/{STREAM}", pc, setup)
            got = 0
            with contextlib.suppress(TimeoutError):
                while got < 10:
                    await asyncio.wait_for(frames.get(), timeout=20)
                    got += 1
            return answered, got, await _delete(server.url, location)
        finally:
            await pc.close()

    answered, frames, deleted = asyncio.run(play())
    assert answered == EXPECTED_ANSWER[setup]  # we are the DTLS server whenever the offer lets us choose
    assert frames == 10, "DTLS came up and video flowed"
    assert deleted == 200


@pytest.mark.parametrize("setup", ["actpass", "active", "passive"])
def test_a_publisher_with_an_rsa_certificate_connects(server: Server, setup: str) -> None:
    name = f"rsa-{setup}"

    async def publish() -> tuple[str, str, int]:
        pc = _peer("rsa")
        pc.addTrack(VideoStreamTrack())  # aiortc's test pattern
        try:
            answered, location = await _exchange(f"{server.url}/whip/{name}", pc, setup)
            status = ""
            for _ in range(100):
                await asyncio.sleep(0.2)
                with urllib.request.urlopen(server.url + "/healthz", timeout=5) as resp:
                    status = json.load(resp)["streams"].get(name, "")
                if status == "live":
                    break
            return answered, status, await _delete(server.url, location)
        finally:
            await pc.close()

    answered, status, deleted = asyncio.run(publish())
    assert answered == EXPECTED_ANSWER[setup]
    assert status == "live", "the RSA publisher's frames reached the pipeline"
    assert deleted == 200
