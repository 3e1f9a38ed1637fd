"""Fan-out through a real SFU: Janus from Debian, in a network namespace of the test's own (libnice ignores
loopback). `streamvis serve --publish STREAM=janus+http://...` sends the stream up once; viewers subscribing
through Janus get the annotated video, the narration audio and the per-frame detections, as a direct viewer does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import ROOT, TinyModels

from streamvis.server.janus import JanusRoom, default_room
from streamvis.testing import sfu


def test_janus_targets_are_parsed() -> None:
    room = JanusRoom.parse("janus+http://sfu.lan:8088/janus?room=1234&pin=9", "cam")
    assert room == JanusRoom("http://sfu.lan:8088/janus", 1234, "9")
    assert JanusRoom.parse("janus+https://sfu.lan/janus", "cam") == JanusRoom("https://sfu.lan/janus",
                                                                              default_room("cam"))
    assert default_room("cam") == default_room("cam") != default_room("door")
    assert 100_000 <= default_room("cam") < 1_000_000  # never Janus's demo rooms
    for url, message in [("janus+http://sfu/janus?room=abc", "positive number"),
                         ("janus+http://sfu/janus?room=0", "positive number"),
                         ("janus://sfu/janus", "janus\\+http"), ("janus+http:///janus", "no host")]:
        with pytest.raises(ValueError, match=message):
            JanusRoom.parse(url, "cam")


def test_publish_takes_janus_rooms() -> None:
    from streamvis.server.egress import parse_publish

    assert parse_publish(["janus+http://sfu:8088/janus?room=7"], ["cam"]) == {
        "cam": "janus+http://sfu:8088/janus?room=7"}
    with pytest.raises(ValueError, match="room must be a positive number"):
        parse_publish(["cam=janus+http://sfu:8088/janus?room=x"], ["cam"])
    with pytest.raises(ValueError, match=r"WHIP endpoint .* or a Janus"):
        parse_publish(["cam=rtmp://sfu/live"], ["cam"])


def test_viewers_through_janus_get_video_detections_and_narration_audio(
        tiny_models: TinyModels, person_video: Path, models_dir: Path, tmp_path: Path) -> None:
    reason = sfu.missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SFU test: {reason} (scripts/test.sh installs janus)")
        pytest.skip(reason)
    narrate = ["-p", "narrate", "--set", "narrator.type=florence2", "--set", f"narrator.model={tiny_models.FLORENCE}",
               "--set", "narrator.max_new_tokens=12", "--set", "narrator.period_s=3", "--set", "narrator.min_gap_s=1"]
    result = sfu.run_in_namespace([str(ROOT / "tests" / "clients" / "sfu_fanout.py"), str(person_video),
                                   str(models_dir), str(tmp_path), "3", *narrate], timeout_s=240,
                                  env={**os.environ, **tiny_models.offline_env})
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))
    assert len(lines) == 2, result.stdout + result.stderr + logs
    watched, after = lines
    assert watched["publishers"] == ["people"], "one upstream into the room, named after the stream"
    direct = watched["direct"]
    assert direct["frames"] >= 30 and direct["resolution_wh"] == [768, 432]
    assert len(watched["janus"]) == 3
    for viewer in watched["janus"]:
        assert viewer["resolution_wh"] == [768, 432]
        assert viewer["frames"] >= 0.6 * direct["frames"], (viewer, direct)  # Janus forwards what it gets
        assert viewer["frame_messages"] >= 0.6 * direct["frame_messages"], "detections relayed by Janus"
        assert viewer["distinct_frame_messages"] == viewer["frame_messages"], "each frame's JSON once"
        assert viewer["detections"] > 0
        assert viewer["narration_messages"] >= 1, "narration events on Janus's data channel"
        assert viewer["audio_samples"] > 48_000 * 4 and viewer["audio_peak_rms"] > 0.02, "speech through Janus"
    assert after == {"publishers_after_stop": []}, "the server left the room when it stopped"


def test_a_receivers_keyframe_request_reaches_the_shared_encoder_at_most_twice_a_second() -> None:
    """A PLI (a Janus subscriber joining) makes aiortc's sender ask its track for a keyframe; for the shared H.264
    output that is the encoder's next frame, and a burst of PLIs from many receivers forces only one."""
    import asyncio
    from types import SimpleNamespace

    from aiortc.rtcrtpsender import RTCRtpSender

    from streamvis.live.stats import StreamStats
    from streamvis.server import aiortc_compat
    from streamvis.server.video_out import PLI_MIN_INTERVAL_S, SharedH264Output

    aiortc_compat.apply()  # as a server does when it starts (the keyframe-requests patch); importing patches nothing

    async def scenario() -> list[bool]:
        output = SharedH264Output(StreamStats("cam"), asyncio.get_running_loop())
        sender = SimpleNamespace(track=output.new_track())  # the sender's state that PLI handling touches
        seen = []
        output._want_keyframe = False
        RTCRtpSender._send_keyframe(sender)  # type: ignore[arg-type]  # what aiortc does on an RTCP PLI
        seen.append(output._want_keyframe)
        output._want_keyframe = False
        RTCRtpSender._send_keyframe(sender)  # type: ignore[arg-type]  # a second PLI right after: already being served
        seen.append(output._want_keyframe)
        output._last_receiver_request -= PLI_MIN_INTERVAL_S
        RTCRtpSender._send_keyframe(sender)  # type: ignore[arg-type]
        seen.append(output._want_keyframe)
        output.close()
        return seen

    assert asyncio.run(scenario()) == [True, False, True]
