"""Finding moments by words: the index (ranking, filters, persistence, a killed writer) with embeddings whose
geometry the test sets; the embedding model path with tiny random CLIP and SigLIP loaded by hub id (shapes, one
space for text and images, batching); `process --index` then `streamvis search` end to end. Random weights show
the code paths work, never that a model finds the right moments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from support import TinyModels, cut_clip, run_cli

from streamvis.config import ClipEmbedderConfig
from streamvis.errors import ConfigError, ModelError
from streamvis.search.index import MomentIndex, SceneMoment, TrackMoment


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def track(stream: str, track_id: int, name: str, start: float, end: float, embedding: np.ndarray) -> TrackMoment:
    return TrackMoment(stream, track_id, name, start, end, 0.9, (0, 0, 10, 10), f"t{track_id}.jpg", embedding)


@pytest.fixture
def index(tmp_path: Path) -> MomentIndex:
    moments = MomentIndex(tmp_path / "moments.duckdb", "model-a", 4)
    moments.add([track("garden", 1, "dog", 10, 20, unit(1, 0, 0, 0)), track("garden", 2, "person", 30, 40,
                                                                           unit(0, 1, 0, 0)),
                 track("street", 3, "car", 5, 8, unit(0.9, 0.1, 0, 0))],
                [SceneMoment("garden", 15, "s15.jpg", unit(0.5, 0.5, 0, 0))])
    return moments


def test_moments_come_best_first_and_filters_narrow_them(index: MomentIndex) -> None:
    found = index.search(unit(1, 0, 0, 0), top=10)
    assert [(f.kind, f.stream, f.track) for f in found] == [("track", "garden", 1), ("track", "street", 3),
                                                          ("scene", "garden", None), ("track", "garden", 2)]
    assert found[0].similarity == pytest.approx(1.0) and found[0].class_name == "dog"
    assert [f.track for f in index.search(unit(1, 0, 0, 0), 10, class_name="car")] == [3]  # no scenes then
    assert {f.stream for f in index.search(unit(1, 0, 0, 0), 10, stream="street")} == {"street"}
    assert [f.track for f in index.search(unit(1, 0, 0, 0), 10, since_s=18, until_s=35, scenes=False)] == [1, 2]
    assert len(index.search(unit(1, 0, 0, 0), top=2)) == 2


def test_an_index_keeps_its_model_and_refuses_another(index: MomentIndex, tmp_path: Path) -> None:
    index.close()
    again = MomentIndex(tmp_path / "moments.duckdb", read_only=True)
    assert (again.model, again.dim, again.counts()) == ("model-a", 4, (3, 1))
    again.close()
    with pytest.raises(ConfigError, match=r"indexed with embedder\.model model-a, not model-b"):
        MomentIndex(tmp_path / "moments.duckdb", "model-b", 4)
    with pytest.raises(ConfigError, match="no index there"):
        MomentIndex(tmp_path / "none.duckdb", read_only=True)
    writable = MomentIndex(tmp_path / "moments.duckdb", "model-a", 4)
    with pytest.raises(ConfigError, match="an embedding of 3 values for an index of 4"):
        writable.add([track("x", 9, "cat", 0, 1, unit(1, 0, 0))], [])
    assert writable.counts() == (3, 1)  # the failed transaction left nothing behind


def test_a_live_track_is_found_while_in_view_then_made_whole(tmp_path: Path) -> None:
    live = MomentIndex(tmp_path / "live.duckdb", "model-a", 4, clock="wall")
    live.put_track(track("gate", 4, "car", 1_700_000_000.0, 1_700_000_000.6, unit(1, 0, 0, 0)))
    assert [(f.track, f.end_s) for f in live.search(unit(1, 0, 0, 0))] == [(4, 1_700_000_000.6)]
    live.put_track(track("gate", 4, "car", 1_700_000_000.0, 1_700_000_009.0, unit(0.8, 0.2, 0, 0)))  # it ended
    assert [(f.track, f.end_s) for f in live.search(unit(1, 0, 0, 0))] == [(4, 1_700_000_009.0)]  # one row
    assert live.search(unit(1, 0, 0, 0))[0].to_json("wall")["start"].startswith("2023-11-1")
    live.close()
    with pytest.raises(ConfigError, match=r"timed by wall-clock times \(serve --index\), not seconds into videos"):
        MomentIndex(tmp_path / "live.duckdb", "model-a", 4)  # a process run's moments cannot join it


def test_parts_merge_into_one_index_whole_or_not_at_all(index: MomentIndex, tmp_path: Path) -> None:
    part = MomentIndex(tmp_path / "part.duckdb", "model-a", 4)
    part.add([track("yard", 7, "cat", 1, 5, unit(0, 0, 1, 0))], [SceneMoment("yard", 2, "s2.jpg", unit(0, 0, 0, 1))])
    part.add_video("yard", tmp_path / "yard.mp4", "yard.avi")
    part.close()
    assert index.merge(tmp_path / "part.duckdb") == (1, 1)
    assert index.counts() == (4, 2) and index.search(unit(0, 0, 1, 0))[0].track == 7
    video = index.video_of("yard")
    assert video is not None and (video.path.name, video.kind, video.source) == ("yard.mp4", "video", "yard.avi")
    other = MomentIndex(tmp_path / "other.duckdb", "model-b", 4)
    other.close()
    with pytest.raises(ConfigError, match="made with model-b"):
        index.merge(tmp_path / "other.duckdb")
    assert index.counts() == (4, 2)


WRITER = """
import sys, numpy as np
from pathlib import Path
from streamvis.search.index import MomentIndex, TrackMoment
index = MomentIndex(Path(sys.argv[1]), "model-a", 64)
n = 0
while True:
    batch = [TrackMoment("cam", n + i, "person", n, n + 1, 0.9, (0, 0, 1, 1), "t.jpg", np.ones(64, np.float32) / 8)
             for i in range(50)]
    index.add(batch, [])
    n += 50
    print(n, flush=True)
"""


def test_a_killed_writer_leaves_a_whole_index(tmp_path: Path) -> None:
    path = tmp_path / "killed.duckdb"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    written = 0
    deadline = time.monotonic() + 60
    while written < 2000 and time.monotonic() < deadline:
        written = int(writer.stdout.readline() or 0)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    reopened = MomentIndex(path, read_only=True)
    tracks, _ = reopened.counts()
    assert tracks >= written and tracks % 50 == 0  # every committed batch, and no half of one
    assert reopened.search(np.ones(64, np.float32) / 8, top=1)[0].similarity == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["clip", "siglip", "siglip2"])
def test_the_embedder_puts_text_and_images_in_one_space(kind: str, tiny_models: TinyModels) -> None:
    """(Loaded from the folder here; `process --index` below loads the hub id, offline, as a user's would.)"""
    from streamvis.search.embedder import ImageTextEmbedder

    model = {"clip": tiny_models.clip, "siglip": tiny_models.siglip, "siglip2": tiny_models.siglip2}[kind]
    embedder = ImageTextEmbedder(ClipEmbedderConfig(model=str(model), batch_size=2))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((40, 90), (120, 30), (64, 64),
                                                                             (10, 10), (300, 200))]
    vectors = embedder.images(images)
    texts = embedder.texts(["a red car", "a dog in the garden"])
    assert vectors.shape == (5, embedder.dim) and texts.shape == (2, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    one_by_one = np.concatenate([embedder.images([im]) for im in images])
    assert np.allclose(vectors, one_by_one, atol=1e-4)  # batches of 2 give what single images give
    assert not np.allclose(texts[0], texts[1])
    assert embedder.provider == "torch:cpu:float32"


def test_streams_crops_share_one_batch_and_get_what_they_would_alone(tiny_models: TinyModels) -> None:
    """On a GPU `serve` batches every stream's crops together (`batching.enabled: auto`); forced here on the CPU."""
    from concurrent.futures import ThreadPoolExecutor

    from streamvis.search.embedder import ImageTextEmbedder

    embedder = ImageTextEmbedder(ClipEmbedderConfig(model=str(tiny_models.clip)))
    rng = np.random.default_rng(1)
    views = {stream: [rng.integers(0, 255, (48, 32, 3), dtype=np.uint8) for _ in range(3)] for stream in range(4)}
    alone = {stream: embedder.images(images) for stream, images in views.items()}
    embedder.batch_across_streams(max_batch=8, batch_wait_ms=50)
    with ThreadPoolExecutor(4) as streams:  # four streams' index writers, each with a track's three views
        together = dict(zip(views, streams.map(embedder.images, views.values()), strict=True))
    assert embedder.batcher is not None and embedder.batcher.stats.items == 12
    assert embedder.batcher.stats.batches < 12  # views of several streams went through one model call
    for stream in views:
        assert np.allclose(together[stream], alone[stream], atol=1e-4)


def test_a_model_that_does_not_embed_images_and_text_is_refused(tiny_models: TinyModels) -> None:
    from streamvis.search.embedder import ImageTextEmbedder

    with pytest.raises(ModelError, match="not an image-text embedding model"):
        ImageTextEmbedder(ClipEmbedderConfig(model=str(tiny_models.sam)))


def test_a_cut_moment_holds_every_frame_to_its_end_with_the_frames_they_refer_to(person_video: Path,
                                                                                 tmp_path: Path) -> None:
    """The shared person video is IBBP: the B-frame shown at 2.5 s refers to the P-frame shown at 2.8 s, which is
    decoded before it. A moment from 2.0 to 2.55 s keeps that P-frame (decoded at 2.4 s) although it is shown later."""
    from streamvis.search.clips import cut

    start_s, end_s = 2.0, 2.55
    clip = cut(person_video, start_s, end_s, tmp_path / "moment.mp4")
    with av.open(str(person_video)) as src:
        stream = src.streams.video[0]
        time_base = stream.time_base
        assert time_base is not None
        src.seek(int(start_s / time_base), stream=stream, backward=True)
        source = [p for p in src.demux(stream) if p.dts is not None]
        source = source[next(i for i, p in enumerate(source) if p.is_keyframe):]
        origin = source[0].dts
        shifted = [(p.pts - origin, p.dts - origin, bytes(p)) for p in source]
    with av.open(str(clip)) as cut_video:
        cut_packets = [(p.pts, p.dts, bytes(p)) for p in cut_video.demux(video=0) if p.dts is not None]
    with av.open(str(clip)) as cut_video:
        frames = list(cut_video.decode(video=0))
    assert cut_packets == shifted[:len(cut_packets)]  # the source's packets from a keyframe, in decoding order, no gap
    shown_by_end = {pts for pts, _, _ in shifted if (pts + origin) * time_base <= end_s}
    assert shown_by_end <= {pts for pts, _, _ in cut_packets}
    assert max(pts for pts, _, _ in cut_packets) * time_base > end_s - start_s  # the P-frame shown after the end
    assert len(frames) == len(cut_packets) and frames[0].key_frame


def test_process_indexes_tracks_and_search_finds_them(tiny_models: TinyModels, person_video: Path,
                                                      models_dir: Path, tmp_path: Path) -> None:
    clip = cut_clip(person_video, tmp_path / "people.mp4", 150)
    index = tmp_path / "moments.duckdb"
    made = run_cli("process", str(clip), "-o", str(tmp_path / "out.mp4"), "--index", str(index), "-q",
                   "--models-dir", str(models_dir), "--set", "embedder.type=clip", "--set",
                   f"embedder.model={tiny_models.CLIP}", env=tiny_models.offline_env)
    assert made.returncode == 0, made.stderr
    found = run_cli("search", "a person walking in", str(index), "--json", "--top", "50",
                    env=tiny_models.offline_env)
    assert found.returncode == 0, found.stderr
    moments = json.loads(found.stdout)
    tracks = [m for m in moments if m["kind"] == "track"]
    scenes = [m for m in moments if m["kind"] == "scene"]
    assert tracks and all(m["class"] == "person" and m["end_s"] - m["start_s"] >= 0.5 for m in tracks)
    assert len(scenes) == 3  # 15 s of video, a scene keyframe every 5 s
    assert all((tmp_path / m["thumbnail"]).is_file() for m in moments)
    similarities = [m["similarity"] for m in moments]
    assert similarities == sorted(similarities, reverse=True)
    person_only = json.loads(run_cli("search", "someone", str(index), "--json", "--class", "person",
                                     env=tiny_models.offline_env).stdout)
    assert person_only and all(m["kind"] == "track" for m in person_only)
    exported = run_cli("search", "a person", str(index), "--json", "--class", "person", "--top", "2", "--export",
                       str(tmp_path / "clips"), env=tiny_models.offline_env)
    assert exported.returncode == 0, exported.stderr
    for moment in json.loads(exported.stdout):
        with av.open(moment["clip"]) as cut:  # the moment, a second either side, from the video the run wrote
            frames = list(cut.decode(video=0))
            assert frames[0].key_frame and len(frames) >= (moment["end_s"] - moment["start_s"]) * 10
    refused = run_cli("process", str(clip), "-o", str(tmp_path / "o2.mp4"), "--index", str(index), "-q",
                      "--models-dir", str(models_dir))
    assert refused.returncode == 2 and "needs an embedder" in refused.stderr
    empty = run_cli("search", "  ", str(index))
    assert empty.returncode == 2 and "the query is empty" in empty.stderr


def test_serve_indexes_streams_as_they_run_and_answers_search(tiny_models: TinyModels, person_video: Path,
                                                              models_dir: Path, tmp_path: Path) -> None:
    from urllib.parse import quote

    from test_serve import Server

    index = tmp_path / "live.duckdb"
    srv = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop", "--index", str(index),
                 "--set", "embedder.type=clip", "--set", f"embedder.model={tiny_models.CLIP}",
                 "--set", "embedder.scene_every_s=2", env=tiny_models.offline_env)
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 60
        while True:
            status, body = srv.get("/search?q=" + quote("a person at the table") + "&top=5")
            assert status == 200, body
            moments = json.loads(body)["moments"]
            if len(moments) >= 2:
                break
            assert time.monotonic() < deadline, body
            time.sleep(1)
        assert all(m["stream"] == "intel_one-by-one-person-detection" for m in moments)
        assert [m["similarity"] for m in moments] == sorted((m["similarity"] for m in moments), reverse=True)
        assert srv.get("/search")[0] == 400
        assert srv.get("/search?q=x&top=0")[0] == 400
        assert srv.get("/search?q=x&since=soon")[0] == 400
    finally:
        srv.stop()
    after = run_cli("search", "a person", str(index), "--json", env=tiny_models.offline_env)
    assert after.returncode == 0 and json.loads(after.stdout)  # the file the server wrote, whole after it stopped
    plain = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop")
    try:
        plain.wait_ready()
        assert plain.get("/search?q=x")[0] == 404
    finally:
        plain.stop()


def test_an_alert_fires_once_per_track_and_sentence_and_respects_its_cooldown() -> None:
    from streamvis.search.alerts import AlertRules

    rules = AlertRules(["a person at the door", "a dog"], np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)]),
                       threshold=0.8, cooldown_s=30.0, max_per_minute=3)
    person = unit(1, 0.1, 0, 0)
    [alert] = rules.check("door", 1, "person", 10.0, person)
    assert (alert.text, alert.track, alert.class_name) == ("a person at the door", 1, "person")
    assert alert.similarity == pytest.approx(float(person @ unit(1, 0, 0, 0)))
    assert rules.check("door", 1, "person", 11.0, person) == []  # that track already fired it
    assert rules.check("door", 2, "person", 20.0, person) == []  # the sentence is cooling down on this stream
    assert len(rules.check("garden", 3, "person", 20.0, person)) == 1  # another stream has its own
    assert len(rules.check("door", 4, "person", 41.0, person)) == 1  # cooled down
    assert rules.check("door", 5, "cat", 42.0, unit(0, 0, 1, 0)) == []  # matches nothing
    busy = AlertRules(["x"], np.stack([unit(1, 0, 0, 0)]), threshold=0.5, cooldown_s=0.0, max_per_minute=2)
    fired = [len(busy.check("s", track, "person", float(track), person)) for track in range(5)]
    assert fired == [1, 1, 0, 0, 0]  # at most two a minute on a stream


def test_serve_alerts_by_words_reach_viewers_and_the_webhook(tiny_models: TinyModels, person_video: Path,
                                                             models_dir: Path, tmp_path: Path) -> None:
    """Random weights: a threshold of -1 makes every new track match, which tests the path, not the model."""
    import asyncio
    import threading

    from aiohttp import web
    from streamvis_client import watch
    from test_serve import Server

    from streamvis.server.aiortc_compat import use_loopback_ice

    posted: list[dict[str, object]] = []
    hook_ready = threading.Event()
    port_box: list[int] = []

    async def receive(request: web.Request) -> web.Response:
        posted.append(await request.json())
        return web.json_response({"ok": True})

    def run_hook() -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_post("/hook", receive)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
            hook_ready.set()
            await asyncio.sleep(120)
        asyncio.run(main())

    threading.Thread(target=run_hook, daemon=True).start()
    assert hook_ready.wait(10)
    use_loopback_ice(only=True)
    srv = Server("--source", str(person_video), "--models-dir", str(models_dir), "--loop", "--index",
                 str(tmp_path / "alerts.duckdb"), "--set", "embedder.type=clip", "--set",
                 f"embedder.model={tiny_models.CLIP}", "--alert", "a person at the table", "--alert-threshold", "-1",
                 "--alert-webhook", f"http://127.0.0.1:{port_box[0]}/hook", env=tiny_models.offline_env)
    try:
        srv.wait_ready()
        report = asyncio.run(watch(srv.url, "intel_one-by-one-person-detection", frames=10**6, timeout_s=25))
    finally:
        srv.stop()
    alerts = [m for m in report.status_messages if m.get("type") == "alert"]
    assert alerts and all(a["text"] == "a person at the table" for a in alerts)
    assert len({a["track"] for a in alerts}) == len(alerts)  # once per track
    assert any(m["text"] == "Alert: a person at the table." and m["urgent"] for m in report.narration_messages)
    assert posted and posted[0]["type"] == "alert" and posted[0]["text"] == "a person at the table"
    refused = run_cli("serve", "--source", str(person_video), "--alert", "a dog")
    assert refused.returncode == 2 and "--alert needs --index FILE" in refused.stderr


class RecordingEmbedder:
    """A stand-in that keeps the views it is given (it tests what the collector crops, not a model)."""

    name, dim, provider = "stand-in", 4, "cpu"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def images(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        self.seen += [im.copy() for im in images_bgr]
        return np.tile(unit(1, 0, 0, 0), (len(images_bgr), 1))


def test_views_of_a_segmented_object_show_the_object_alone(tmp_path: Path) -> None:
    import supervision as sv

    from streamvis.frame import Frame, Result
    from streamvis.search.collect import BACKGROUND_GREY, MomentCollector

    embedder = RecordingEmbedder()
    index = MomentIndex(tmp_path / "masked.duckdb", "stand-in", 4)
    collector = MomentCollector(index, embedder, "cam", ClipEmbedderConfig(scene_every_s=1000, min_track_s=0.0))  # type: ignore[arg-type]
    image = np.full((100, 100, 3), 255, np.uint8)  # a white room
    mask = np.zeros((1, 100, 100), bool)
    mask[0, 20:60, 30:50] = True  # the object: a column inside its box
    for i in range(3):
        detections = sv.Detections(xyxy=np.array([[10, 10, 70, 70]], np.float32), confidence=np.array([0.9]),
                                   class_id=np.array([0]), tracker_id=np.array([5]), mask=mask,
                                   data={"class_name": np.array(["person"])})
        collector.write(Result(Frame(image, i, i / 10, "cam"), detections, True))
    collector.close()
    scenes = len(embedder.seen) - 3
    view = embedder.seen[scenes]  # first, best, last of track 5 come after the scene keyframe
    assert view.shape[:2] == (60, 60)
    assert (view[15:45, 25:35] == 255).all()  # the object's own pixels
    assert (view[0:5, 0:60] == BACKGROUND_GREY).all() and (view[:, 0:15] == BACKGROUND_GREY).all()
    assert index.counts() == (1, 1)


def test_a_live_streams_budget_spaces_its_scene_keyframes(tmp_path: Path) -> None:
    from streamvis.frame import Frame, Result
    from streamvis.search.collect import MomentCollector
    from streamvis.serialize import empty_detections

    index = MomentIndex(tmp_path / "live.duckdb", "stand-in", 4, clock="wall")
    collector = MomentCollector(index, RecordingEmbedder(), "cam", ClipEmbedderConfig(scene_every_s=2))  # type: ignore[arg-type]
    image = np.zeros((40, 40, 3), np.uint8)
    start = time.monotonic()

    def run(first: int, seconds: int) -> None:  # a frame every 0.5 s of the wall clock
        for i in range(first * 2, (first + seconds) * 2):
            collector.write(Result(Frame(image, i, i / 2, "cam", decoded_at=start + i / 2), empty_detections(), True))

    run(0, 10)
    collector.min_gap_s = 10.0  # the latency budget's narration step: model work at most every 10 s
    run(10, 30)
    collector.close()
    origin = Frame(image, 0, 0, "cam", decoded_at=start).decoded_wall_s  # scenes are timed by the wall clock
    times = sorted(round(f.start_s - origin, 1) for f in index.search(unit(1, 0, 0, 0), 100))
    assert times == [0.0, 2.0, 4.0, 6.0, 8.0, 18.0, 28.0, 38.0]


def test_an_indexed_live_stream_paces_its_index_by_the_budget(tmp_path: Path) -> None:
    from streamvis.config import PipelineConfig
    from streamvis.live.budget import BudgetPlan
    from streamvis.live.runner import LiveStream
    from streamvis.live.settings import LiveSettings
    from streamvis.pipeline.loading import Models
    from streamvis.search.live import LiveIndex
    from streamvis.sources import open_source
    from streamvis.testing.fakes import StandInDetector

    config = PipelineConfig.model_validate({"latency": {"budget_ms": 50}})
    moments = LiveIndex(tmp_path / "live.duckdb", RecordingEmbedder(), ClipEmbedderConfig())  # type: ignore[arg-type]
    stream = LiveStream("cam", lambda: open_source("synthetic:?w=64&h=48&frames=5"), config,
                        Models(StandInDetector(0.001)), LiveSettings(moments=moments))
    assert stream.budget is not None and any(plan.narration_gap_s > 0 for plan in stream.budget.ladder)
    stream.index_into(moments)
    assert stream.moments is not None and stream.moments.min_gap_s == 0
    stream._apply_plan(BudgetPlan(narration_gap_s=10.0))  # the step the budget takes when it must
    assert stream.moments.min_gap_s == 10.0
    stream.stop()
    moments.close()
