"""The server's state: its streams, the publishers feeding some of them, the viewers watching them, and each
stream's video output. Results reach viewers through one sink per stream (`ViewerFanout`); everything that
crosses from a stream's threads to the event loop goes through `StreamHub.post`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.exceptions import OperationError

from streamvis.frame import Result, SceneDescription
from streamvis.live.runner import LiveStream
from streamvis.prompts import PromptError, RateLimiter, parse_prompt
from streamvis.serialize import result_to_json
from streamvis.server import aiortc_compat
from streamvis.server.audio import synthesize_for_tracks
from streamvis.server.egress import Egress, make_egress
from streamvis.server.ingest import Publisher
from streamvis.server.peers import Viewer
from streamvis.server.refused import Refused
from streamvis.server.video_out import RTP_MASK, VideoOutput, scaled, video_output, video_pts
from streamvis.sources.base import Source

if TYPE_CHECKING:
    from streamvis.search.alerts import Alert
    from streamvis.search.live import LiveIndex

WEBHOOK_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)

StreamFactory = Callable[[str, Callable[[], Source]], LiveStream]
STATS_EVERY_FRAMES = 15  # a stats summary rides along with every 15th frame message
LAYERS = ("burned", "client")  # boxes, masks and labels burnt into the video, or drawn by the viewer
PROMPT_TIMEOUT_S = 30.0  # a prompt not applied by then is reported as such (words on a CPU take seconds)


@dataclass
class ServerSettings:
    token: str | None = None
    view_token: str | None = None  # lets its holders watch and ask, but not prompt or publish
    prompts_per_s: float = 5.0  # per viewer (or HTTP client), bursts of `prompt_burst`
    prompt_burst: int = 10
    codec: str = "h264"
    ice_servers: list[str] = field(default_factory=list)  # stun:host:port, turn:user:pass@host:port
    cors_origins: list[str] = field(default_factory=list)  # origins whose pages may call the API ("*": any)
    publish: dict[str, str] = field(default_factory=dict)  # stream id -> WHIP endpoint or Janus room it goes to
    publish_token: str | None = None  # bearer token for those endpoints (Janus: its API token)
    search: LiveIndex | None = None  # `serve --index`: what `GET /search` ranks
    heap_trim_s: float = 0.0  # hand the C heap's free pages back this often (`heap.HeapTrimmer`); 0 never


def viewer_codec(offer_sdp: str, preferred: str) -> str:
    """The video codec to send a viewer: the server's choice (`--codec`) when the offer takes it, else the other
    one we have (a player that takes only VP8 still plays); a `ValueError` when it takes neither."""
    offered = {line.split()[1].split("/")[0].lower() for line in offer_sdp.splitlines()
               if line.startswith("a=rtpmap:") and len(line.split()) > 1}
    for codec in (preferred, *(c for c in ("h264", "vp8") if c != preferred)):
        if codec in offered:
            return codec
    raise ValueError(f"the offer takes no video codec the server sends (H.264 or VP8); it offers: "
                     f"{', '.join(sorted(offered)) or 'none'}")


def ice_server(url: str) -> RTCIceServer:
    """`turn:user:pass@host:port` -> RTCIceServer(urls, username, credential); `stun:host:port` as is."""
    scheme, _, rest = url.partition(":")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user, _, password = creds.partition(":")
        return RTCIceServer(urls=f"{scheme}:{host}", username=user, credential=password)
    return RTCIceServer(urls=url)


def narration_message(stream_id: str, d: SceneDescription) -> dict[str, Any]:
    return {"type": "narration", "stream": stream_id, "text": d.text, "frame_index": d.frame_index,
            "pts": round(d.pts, 3), "reason": d.reason, "question": d.question, "model": d.model,
            "latency_ms": round(d.latency_ms, 1), "urgent": d.urgent, "texts": d.texts, "tracks": list(d.tracks)}


class ViewerFanout:
    """The sink that takes a stream's results to its viewers: video to the stream's outputs (from the pipeline
    thread), the per-frame JSON (serialised once) to every viewer's data channel (on the event loop).

    The pipeline thread reads only `outputs` and `listened`, which the loop hands over whole (a new tuple, a new
    bool: one reference assigned) whenever viewers, egresses or outputs change; it never reads the hub's dicts."""

    def __init__(self, hub: StreamHub, stream: LiveStream) -> None:
        self.hub = hub
        self.stream = stream
        self.outputs: tuple[VideoOutput, ...] = ()  # one per codec and layering viewers take
        self.listened = False  # whether any viewer or egress takes the stream's messages

    def wants_annotated(self) -> bool:
        """Whether a viewer or an egress takes the annotated video (not only the clean one, or nothing)."""
        return any(output.active and not output.clean for output in self.outputs)

    def write(self, result: Result) -> None:
        plan = self.stream.plan  # a latency budget may send viewers fewer or smaller frames
        if plan.output_every == 1 or result.frame.index % plan.output_every == 0:
            smaller: Result | None = None
            for output in self.outputs:
                # a first viewer of the annotated video gets it from the next frame, drawn for it
                if not output.active or (not output.clean and result.annotated is None):
                    continue
                if plan.output_scale < 1 and not output.clean:  # the clean video keeps the layers' pixels
                    smaller = smaller or scaled(result, plan.output_scale)
                    output.push(smaller)
                else:
                    output.push(result)
        if self.listened:
            stats = self.stream.stats.snapshot() if result.frame.index % STATS_EVERY_FRAMES == 0 else None
            # rtp_pts and decoded_at_ms let a viewer find the message of the frame on its screen and measure
            # from the frame's arrival here to its display there
            # result_at_ms, stages_ms and encoded give the viewer each frame's timeline on the server's clock
            encoded = [entry for output in self.outputs for entry in output.take_encoded()]
            message = json.dumps({"type": "frame", "stream": self.stream.stream_id, **result_to_json(result),
                                  "rtp_pts": video_pts(result) & RTP_MASK,
                                  "decoded_at_ms": round(result.frame.decoded_at * 1e3, 3),
                                  "result_at_ms": round(time.monotonic() * 1e3, 3),
                                  "stages_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
                                  "encoded": encoded, "stats": stats})
            self.hub.post(self.hub.send_to_viewers, self.stream, message)

    def close(self) -> None:
        """The stream stopped: its viewers keep their connections until they hang up."""


class StreamHub:
    """Streams, publishers, viewers and video outputs, and the one hand-off from stream threads to the loop."""

    def __init__(self, streams: dict[str, LiveStream], settings: ServerSettings,
                 make_stream: StreamFactory | None = None) -> None:
        self.streams = streams
        self.settings = settings
        self.make_stream = make_stream
        self.viewers: dict[str, Viewer] = {}
        self.publishers: dict[str, Publisher] = {}
        # per stream, codec and layering (burned in or drawn by the viewer), made for a first viewer
        self.outputs: dict[tuple[LiveStream, str, bool], VideoOutput] = {}
        self.prompt_limiter = RateLimiter(settings.prompts_per_s, settings.prompt_burst)
        aiortc_compat.apply()  # once per process, at server start: RSA peers, PLI forwarding, encoder timing
        self.rtc_config = RTCConfiguration([ice_server(u) for u in settings.ice_servers])
        self.loop: asyncio.AbstractEventLoop | None = None
        self.egresses: list[Egress] = []
        self._fanouts: dict[LiveStream, ViewerFanout] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # every task the hub starts, until it ends

    # -- tasks -----------------------------------------------------------------------------------------------
    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` as a task the hub owns (on the loop): kept until it ends, a failure logged with `name`."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception(), exc_info=task.exception())

    def _hand_over(self, stream: LiveStream) -> None:
        """On the loop, after a change: give the stream's fanout its outputs and whether anyone listens."""
        fanout = self._fanouts.get(stream)
        if fanout is not None:
            fanout.outputs = tuple(output for (owner, _, _), output in self.outputs.items() if owner is stream)
            fanout.listened = bool(self.recipients(stream))

    # -- from stream threads ----------------------------------------------------------------------------------
    def post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` on the event loop: the one way a stream's threads reach viewers."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def watchers(self, stream: LiveStream) -> list[Viewer]:
        return [v for v in list(self.viewers.values()) if v.stream is stream]

    def relays(self, stream: LiveStream) -> list[Egress]:
        """The egresses carrying this stream to a media server (which passes its messages on to its viewers)."""
        return [e for e in self.egresses if e.stream_id == stream.stream_id]

    def recipients(self, stream: LiveStream) -> list[Viewer | Egress]:
        """Everyone the stream's messages and speech go to: its viewers and its egresses."""
        return [*self.watchers(stream), *self.relays(stream)]

    def send_to_viewers(self, stream: LiveStream, message: dict[str, Any] | str) -> None:
        for peer in self.recipients(stream):
            peer.send(message)

    def _narrated(self, stream: LiveStream, description: SceneDescription) -> None:
        self.send_to_viewers(stream, narration_message(stream.stream_id, description))
        if any(peer.audio is not None for peer in self.recipients(stream)) and self.loop is not None:
            self.spawn(self._speak(stream, description.text), f"{stream.stream_id}: speech")

    async def _speak(self, stream: LiveStream, text: str) -> None:
        """Synthesise once (espeak-ng, in a thread) and queue the speech on every audio track of the stream:
        its listening viewers' and its egresses'."""
        narrator = stream.pipeline.config.narrator
        speech = await synthesize_for_tracks(stream.stream_id, text, narrator.voice, narrator.speech_rate_wpm)
        if speech is not None:
            for peer in self.recipients(stream):
                peer.speak(speech)

    def _alerted(self, stream: LiveStream, alert: Alert) -> None:
        """An alert by words: to the stream's viewers, and POSTed to the webhook when one is set."""
        self.send_to_viewers(stream, alert.to_json())
        search = self.settings.search
        webhook = search.alert_settings.webhook if search is not None and search.alert_settings else None
        if webhook is not None and self.loop is not None:
            self.spawn(self._post_alert(webhook, alert), f"{stream.stream_id}: alert webhook")

    async def _post_alert(self, url: str, alert: Alert) -> None:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)) as session, \
                    session.post(url, json=alert.to_json()) as response:
                if response.status >= 400:
                    log.warning("alert webhook %s answered %d", url, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("alert webhook %s: %s", url, exc or type(exc).__name__)

    def _status(self, stream: LiveStream, status: str) -> None:
        self.send_to_viewers(stream, {"type": "status", "stream": stream.stream_id, "status": status})

    # -- streams ---------------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for stream in self.streams.values():
            self._attach(stream)
        for stream_id, url in self.settings.publish.items():
            egress = make_egress(self, stream_id, url, self.settings.publish_token)
            self.egresses.append(egress)
            egress.start()
        for stream in self.streams.values():
            self._hand_over(stream)

    def _attach(self, stream: LiveStream) -> None:
        fanout = self._fanouts[stream] = ViewerFanout(self, stream)
        stream.add_sink(fanout, fanout.wants_annotated)
        stream.on_status(functools.partial(self.post, self._status, stream))
        stream.on_narration(functools.partial(self.post, self._narrated, stream))
        stream.on_alert(functools.partial(self.post, self._alerted, stream))
        stream.start()

    async def add_publisher(self, name: str, sdp: str) -> Publisher:
        """A WHIP publisher becomes stream `name` (replacing an earlier publisher's stream of that name)."""
        if self.make_stream is None:
            raise Refused(501, "this server takes no WHIP publishers")
        old = self.streams.get(name)
        if old is not None and not any(p.stream_id == name for p in self.publishers.values()) \
                and old.status == "live":
            raise Refused(409, f"stream '{name}' is a configured source")
        for previous in [p for p in self.publishers.values() if p.stream_id == name]:
            await previous.close()
        publisher = Publisher(name, self.rtc_config)
        try:
            answer = await publisher.answer(sdp)
        except ValueError as exc:
            await publisher.close()
            raise Refused(400, f"unusable SDP offer: {exc}") from exc
        except Exception:
            await publisher.close()
            raise
        self.publishers[publisher.id] = publisher
        stream = self.make_stream(name, lambda: publisher.source)
        if old is not None:
            await asyncio.get_running_loop().run_in_executor(None, old.stop)
            for key in [k for k in self.outputs if k[0] is old]:
                self.outputs.pop(key).close()
            self._fanouts.pop(old, None)
        self.streams[name] = stream
        self._attach(stream)
        self._hand_over(stream)
        publisher.answer_sdp = answer
        self.spawn(self._reap_publisher(publisher), f"WHIP publisher {publisher.id}: reaper")
        return publisher

    async def _reap_publisher(self, publisher: Publisher) -> None:
        await publisher.closed.wait()
        self.publishers.pop(publisher.id, None)

    # -- viewers ---------------------------------------------------------------------------------------------
    def output_for(self, stream: LiveStream, codec: str, clean: bool = False) -> VideoOutput:
        """The stream's video output in `codec`, annotated or `clean`, made for its first viewer of that kind."""
        output = self.outputs.get((stream, codec, clean))
        if output is None:
            output = self.outputs[(stream, codec, clean)] = video_output(codec, stream.stats,
                                                                         asyncio.get_running_loop(), clean)
            self._hand_over(stream)
        return output

    async def add_viewer(self, stream: LiveStream, sdp: str, sdp_type: str, can_prompt: bool = True,
                         layers: str = "burned") -> Viewer:
        """A viewer of `stream`; `layers`: "burned" (the annotated video) or "client" (the clean video, for a
        viewer that draws boxes, masks and labels itself from the data channel)."""
        if layers not in LAYERS:
            raise Refused(400, f"layers must be one of {', '.join(LAYERS)}, got {layers!r}")
        try:
            codec = viewer_codec(sdp, self.settings.codec)
        except ValueError as exc:
            raise Refused(400, f"unusable SDP offer: {exc}") from exc
        track = self.output_for(stream, codec, clean=layers == "client").new_track()
        viewer = Viewer(stream, self.rtc_config, track, can_prompt=can_prompt, layers=layers)
        viewer.on_request = self._viewer_request
        self.viewers[viewer.id] = viewer
        stream.stats.viewers += 1
        self._hand_over(stream)
        self.spawn(self._reap(viewer), f"viewer {viewer.id}: reaper")
        try:
            narrator = stream.pipeline.config.narrator
            await viewer.answer(sdp, sdp_type, codec, narrator.enabled and narrator.speech)
        except (OperationError, ValueError) as exc:  # aiortc could not match what the offer asks for
            await viewer.close()
            raise Refused(400, f"unusable SDP offer: {exc}") from exc
        except Exception:
            await viewer.close()
            raise
        return viewer

    # -- prompts ---------------------------------------------------------------------------------------------
    async def prompt(self, stream: LiveStream, data: Any, client: str, can_prompt: bool) -> dict[str, Any]:
        """A prompt from `client` (a viewer, or an HTTP caller): checked, rate-limited, applied by the stream's
        pipeline; the answer is a `prompt_result` message (`ok` false with the `error` when it could not be)."""
        request_id = str(data.get("id", ""))[:64] if isinstance(data, dict) else ""
        try:
            if not can_prompt:
                raise Refused(403, "prompt: this viewer may watch but not prompt (it connected without the "
                                         "server's token)")
            if not self.prompt_limiter.allow(client):
                raise Refused(429, f"prompt: at most {self.settings.prompts_per_s:g} prompts a second "
                                         f"(bursts of {self.settings.prompt_burst}); slow down")
            prompt = parse_prompt(data, stream.resolution_wh)
            result = await asyncio.wait_for(asyncio.wrap_future(stream.prompt(prompt)), PROMPT_TIMEOUT_S)
        except Refused as exc:
            return {"type": "prompt_result", "id": request_id, "ok": False, "error": str(exc), "status": exc.status}
        except PromptError as exc:
            return {"type": "prompt_result", "id": request_id, "ok": False, "error": str(exc), "status": 400}
        except TimeoutError:
            return {"type": "prompt_result", "id": request_id, "ok": False, "status": 504,
                    "error": f"prompt: not applied within {PROMPT_TIMEOUT_S:g} s (is the stream running?)"}
        except Exception as exc:
            log.exception("stream %s: a prompt failed", stream.stream_id)
            return {"type": "prompt_result", "id": request_id, "ok": False, "status": 500,
                    "error": f"prompt: failed ({type(exc).__name__}: {exc})"}
        return {**result.to_json(), "stream": stream.stream_id, "status": 200}

    def _viewer_request(self, viewer: Viewer, message: dict[str, Any]) -> None:
        """A viewer's data-channel request (on the loop): prompts, answered on the same channel."""
        if message.get("type") != "prompt":
            viewer.send({"type": "error", "error": f"unknown request type {message.get('type')!r} (expected "
                                                   "ping or prompt)"})
            return
        body = message.get("prompt")
        if not isinstance(body, dict):
            viewer.send({"type": "prompt_result", "ok": False, "id": "",
                         "error": 'prompt: expected {"type": "prompt", "prompt": {"type": "point", ...}}'})
            return

        async def answer() -> None:
            reply = await self.prompt(viewer.stream, body, f"viewer:{viewer.id}", viewer.can_prompt)
            reply.pop("status", None)
            viewer.send(reply)

        self.spawn(answer(), f"viewer {viewer.id}: prompt")

    async def _reap(self, viewer: Viewer) -> None:
        await viewer.closed.wait()
        if self.viewers.pop(viewer.id, None) is not None:
            viewer.stream.stats.viewers -= 1
            self._hand_over(viewer.stream)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(e.close() for e in self.egresses), return_exceptions=True)
        await asyncio.gather(*(v.close() for v in list(self.viewers.values())), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in list(self.publishers.values())), return_exceptions=True)
        for output in self.outputs.values():
            output.close()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, s.stop) for s in self.streams.values()))


HUB = web.AppKey("hub", StreamHub)  # the server's streams, viewers and publishers
SETTINGS = web.AppKey("settings", ServerSettings)  # what `serve` was asked for
