"""A WHIP publisher built on GStreamer 1.22's `webrtcbin` (its default RSA DTLS certificate), for the interop tests.
Debian's GStreamer 1.22 has no `whipsink`, so the WHIP exchange is done here: webrtcbin's offer, once ICE gathering
is complete, is POSTed to the endpoint and the answer set back; DELETE at the end. Run with the system Python:

    /usr/bin/python3 tests/clients/gst_whip.py URL SECONDS [TOKEN]

libnice ignores loopback: run it where the server has another address (the tests use a network namespace with a
veth pair). Prints one JSON line: the POST status, the connection state reached, the DELETE status.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = ("webrtcbin name=send bundle-policy=max-bundle "
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 "
            "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
            "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
            "! application/x-rtp,media=video,encoding-name=H264,payload=96 ! send.")


def request(method, url, body, token):
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else None
    Gst.init(None)
    pipeline = Gst.parse_launch(PIPELINE)
    webrtc = pipeline.get_by_name("send")
    loop = GLib.MainLoop()
    result = {"post": None, "connection": "new", "delete": None}
    posted = []

    def on_state(element, _param):
        state = element.get_property("connection-state")
        result["connection"] = state.value_nick
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            GLib.timeout_add(int(seconds * 1000), loop.quit)

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
        answer_description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        webrtc.emit("set-remote-description", answer_description, None)
        return False

    def on_gathering(element, _param):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(post_offer)

    def on_offer(promise, _data):
        reply = promise.get_reply()  # keep it referenced while its offer is used (PyGObject does not copy it)
        webrtc.emit("set-local-description", reply.get_value("offer"), None)

    def on_negotiation_needed(element):
        element.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    webrtc.connect("on-negotiation-needed", on_negotiation_needed)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::connection-state", on_state)
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int((seconds + 30) * 1000), loop.quit)  # never hang
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    if result.get("location"):
        result["delete"] = request("DELETE", result["location"], None, token)[0]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
