"""The WHIP/WHEP exchange for GStreamer 1.22's `webrtcbin` (Debian's GStreamer has neither `whipsink` nor
`whepsrc`), shared by tests/clients/gst_whip.py and gst_whep.py: the offer is POSTed once ICE gathering is
complete (no trickle), the answer set back; DELETE at the end. System Python (python3-gi)."""

import json
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

__all__ = ["GLib", "Gst", "GstWebRTC", "create_offer", "post_offer_when_gathered", "request", "run_then_hang_up"]


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


def post_offer_when_gathered(webrtc, url, token, result, loop):
    """When `webrtc` has gathered its candidates, POST its offer to `url` and set the answer; `result` gets the
    POST status and the session's location (or the error, and the loop quits)."""
    posted = []

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

    webrtc.connect("notify::ice-gathering-state", on_gathering)


def create_offer(webrtc):
    def on_offer(promise, _data):
        reply = promise.get_reply()  # keep it referenced while its offer is used (PyGObject does not copy it)
        webrtc.emit("set-local-description", reply.get_value("offer"), None)

    webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


def run_then_hang_up(loop, pipeline, result, token, limit_s):
    """Run the main loop (at most `limit_s`), stop the pipeline, DELETE the session, print `result` as JSON."""
    GLib.timeout_add(int(limit_s * 1000), loop.quit)  # never hang
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    if result.get("location"):
        result["delete"] = request("DELETE", result["location"], None, token)[0]
    print(json.dumps(result), flush=True)
