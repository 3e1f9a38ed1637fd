"""A WHEP player built on GStreamer 1.22's `webrtcbin` (its default RSA DTLS certificate), for the interop tests:
a receive-only H.264 transceiver and a data channel, offered once ICE gathering is complete (Debian's GStreamer
has no `whepsrc`); frames are decoded by `decodebin` and counted, data-channel messages counted; DELETE at the end.
Run with the system Python:

    /usr/bin/python3 tests/clients/gst_whep.py URL FRAMES [TOKEN]

libnice ignores loopback: run it where the server has another address (the tests use a network namespace with a
veth pair). Prints one JSON line: the POST status, the connection state reached, frames decoded and their size,
data-channel messages by type, the DELETE status.
"""

import json
import sys
import urllib.parse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gst_whip import request  # noqa: E402

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
    posted = []

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

    def post_offer():
        if posted:
            return False
        posted.append(True)
        offer = webrtc.get_property("local-description").sdp.as_text()
        status, headers, answer = request("POST", url, offer.encode(), token)
        result["post"] = status
        if status != 201:
            result["error"] = answer[:300]
            loop.quit()
            return False
        result["location"] = urllib.parse.urljoin(url, headers.get("Location", ""))
        _, sdp = GstSdp.SDPMessage.new_from_text(answer)
        webrtc.emit("set-remote-description",
                    GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp), None)
        return False

    def on_gathering(element, _param):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(post_offer)

    def on_offer(promise, _data):
        reply = promise.get_reply()  # keep it referenced while its offer is used (PyGObject does not copy it)
        webrtc.emit("set-local-description", reply.get_value("offer"), None)

    webrtc.connect("pad-added", on_incoming)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::connection-state", on_state)
    pipeline.set_state(Gst.State.PLAYING)
    webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(H264))
    channel = webrtc.emit("create-data-channel", "events", None)
    channel.connect("on-message-string", on_message)
    webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))
    GLib.timeout_add(60_000, loop.quit)  # never hang
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    if result.get("location"):
        result["delete"] = request("DELETE", result["location"], None, token)[0]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
