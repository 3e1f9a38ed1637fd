"""A WHEP player built on GStreamer 1.22's `webrtcbin` (its default RSA DTLS certificate), for the interop tests:
a receive-only H.264 transceiver and a data channel (Debian's GStreamer has no `whepsrc`: the WHEP exchange is
tests/clients/gst_wish.py's); frames are decoded by `decodebin` and counted, data-channel messages counted;
DELETE at the end. Run with the system Python:

    /usr/bin/python3 tests/clients/gst_whep.py URL FRAMES [TOKEN]

libnice ignores loopback: run it where the server has another address (the tests use a network namespace with a
veth pair). Prints one JSON line: the POST status, the connection state reached, frames decoded and their size,
data-channel messages by type, the DELETE status.
"""

import json
import sys

from gst_wish import GLib, Gst, GstWebRTC, create_offer, post_offer_when_gathered, run_then_hang_up

H264 = ("application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
        "packetization-mode=(string)1,profile-level-id=(string)42e01f")


def main():
    url, frames_wanted = sys.argv[1], int(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else None
    Gst.init(None)
    pipeline = Gst.Pipeline.new("player")
    webrtc = Gst.ElementFactory.make("webrtcbin", "recv")
    webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipeline.add(webrtc)
    loop = GLib.MainLoop()
    result = {"post": None, "connection": "new", "frames": 0, "size": None, "messages": {}, "delete": None}

    def on_decoded(pad, info):
        result["frames"] += 1
        if result["size"] is None:
            structure = pad.get_current_caps().get_structure(0)
            result["size"] = [structure.get_value("width"), structure.get_value("height")]
        if result["frames"] >= frames_wanted:
            GLib.idle_add(loop.quit)
        return Gst.PadProbeReturn.OK

    def on_decoder_pad(_decodebin, pad):
        if not pad.get_current_caps().to_string().startswith("video/x-raw"):
            return
        sink = Gst.ElementFactory.make("fakesink")
        pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        pad.add_probe(Gst.PadProbeType.BUFFER, on_decoded)

    def on_incoming(_element, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        decodebin = Gst.ElementFactory.make("decodebin")
        decodebin.connect("pad-added", on_decoder_pad)
        pipeline.add(decodebin)
        decodebin.sync_state_with_parent()
        pad.link(decodebin.get_static_pad("sink"))

    def on_message(_channel, text):
        kind = json.loads(text).get("type", "?")
        result["messages"][kind] = result["messages"].get(kind, 0) + 1

    def on_state(element, _param):
        result["connection"] = element.get_property("connection-state").value_nick

    webrtc.connect("pad-added", on_incoming)
    webrtc.connect("notify::connection-state", on_state)
    post_offer_when_gathered(webrtc, url, token, result, loop)
    pipeline.set_state(Gst.State.PLAYING)
    webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(H264))
    channel = webrtc.emit("create-data-channel", "events", None)
    channel.connect("on-message-string", on_message)
    create_offer(webrtc)
    run_then_hang_up(loop, pipeline, result, token, 60)


if __name__ == "__main__":
    main()
