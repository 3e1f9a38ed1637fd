"""A WHIP publisher built on GStreamer 1.22's `webrtcbin` (its default RSA DTLS certificate), for the interop tests.
Debian's GStreamer 1.22 has no `whipsink`: the WHIP exchange is tests/clients/gst_wish.py's. Run with the system Python:

    /usr/bin/python3 tests/clients/gst_whip.py URL SECONDS [TOKEN]

libnice ignores loopback: run it where the server has another address (the tests use a network namespace with a
veth pair). Prints one JSON line: the POST status, the connection state reached, the DELETE status.
"""

import sys

from gst_wish import GLib, Gst, GstWebRTC, create_offer, post_offer_when_gathered, run_then_hang_up

PIPELINE = ("webrtcbin name=send bundle-policy=max-bundle "
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 "
            "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
            "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
            "! application/x-rtp,media=video,encoding-name=H264,payload=96 ! send.")


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else None
    Gst.init(None)
    pipeline = Gst.parse_launch(PIPELINE)
    webrtc = pipeline.get_by_name("send")
    loop = GLib.MainLoop()
    result = {"post": None, "connection": "new", "delete": None}

    def on_state(element, _param):
        state = element.get_property("connection-state")
        result["connection"] = state.value_nick
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            GLib.timeout_add(int(seconds * 1000), loop.quit)

    webrtc.connect("on-negotiation-needed", create_offer)
    post_offer_when_gathered(webrtc, url, token, result, loop)
    webrtc.connect("notify::connection-state", on_state)
    pipeline.set_state(Gst.State.PLAYING)
    run_then_hang_up(loop, pipeline, result, token, seconds + 30)


if __name__ == "__main__":
    main()
