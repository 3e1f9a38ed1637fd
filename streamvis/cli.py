"""The `streamvis` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console

from streamvis import __version__, env
from streamvis.errors import ConfigError, ModelError, StreamvisError
from streamvis.logs import setup_logging

if TYPE_CHECKING:
    from streamvis.runtime.precision import Int8Range

log = logging.getLogger("streamvis")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Real-time video detection, tracking and segmentation.")

# One rule for exit codes: 2 when nothing could start because of what was asked (usage, pipeline file, a model that
# cannot be found or loaded); 1 when an input failed or ended early, or the server failed; 130 on Ctrl-C.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
SETUP_ERRORS = (ConfigError, ModelError)

PipelineOpt = Annotated[str | None, typer.Option("--pipeline", "-p", help="pipeline file or name (default: detect)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a pipeline field: key=value (repeatable)")]
ModelsDirOpt = Annotated[Path | None, typer.Option("--models-dir", envvar=env.MODELS_DIR,
                                                   help="local models folder (offline use)")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="verbose logs and tracebacks")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamvis {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False) -> None:
    """streamvis: files, cameras and streams in; annotated video and detections out."""


@app.command()
def process(
    inputs: Annotated[list[str], typer.Argument(help="video files, folders, image globs, URLs, cameras, synthetic:")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output .mp4 (one input) or folder")],
    events: Annotated[
        Path | None, typer.Option("--events", help="per-frame detections: .jsonl (one input) or folder")
    ] = None,
    pipeline: PipelineOpt = None,
    set_: SetOpt = None,
    captions: Annotated[Path | None, typer.Option(
        "--captions", help="narration as WebVTT: .vtt (one input) or folder; needs a narrator")] = None,
    audio_description: Annotated[bool, typer.Option(
        "--audio-description", help="mux the spoken narration into the MP4 as an extra audio track")] = False,
    in_flight: Annotated[int | None, typer.Option(
        "--in-flight", min=1, help="frames in the detector at once (default: CPU cores + 1); the output is the "
                                   "same whatever it is")] = None,
    index: Annotated[Path | None, typer.Option(
        "--index", help="add each track and scene keyframe to this index file (DuckDB), to find moments by words "
                        "with `streamvis search`; needs an embedder (--set embedder.type=clip)")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="run on a Ray cluster through Ray Data (streamvis[ray]); a "
                                                    "local one unless --ray-address is given")] = False,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="the cluster to join, e.g. ray://head:10001 or auto (implies --ray)")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        "--ray-workers", min=1, help="detector actors (default: cluster CPUs / --ray-cpus-per-worker)")] = None,
    ray_cpus_per_worker: Annotated[float, typer.Option("--ray-cpus-per-worker", min=0.1)] = 1.0,
    ray_gpus_per_worker: Annotated[float | None, typer.Option(
        "--ray-gpus-per-worker", min=0.0, help="default: 1 when the cluster has GPUs and the detector runs on "
                                               "CUDA or TensorRT, else 0")] = None,
    chunk_s: Annotated[float, typer.Option(
        "--chunk-s", min=1.0, help="--ray: long videos are cut at keyframes into chunks of about this many seconds")
    ] = 60.0,
    chunk_overlap_s: Annotated[float, typer.Option(
        "--chunk-overlap-s", min=0.0, help="--ray: seconds each chunk also tracks before its start, to carry ids")
    ] = 2.0,
    models_dir: ModelsDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress, warnings and errors only")] = False,
    debug: DebugOpt = False,
) -> None:
    """Annotate recorded videos (or any source) into browser-playable MP4s plus per-frame JSONL."""
    setup_logging(debug, quiet)
    from streamvis.config import load_pipeline
    from streamvis.offline.process import process_all, summary_table

    try:
        config = load_pipeline(pipeline, set_ or [])
        if ray or ray_address:
            from streamvis.offline.on_ray import RaySettings, process_on_ray

            if captions is not None or audio_description:
                raise ConfigError("--ray writes video, JSONL and the index; --captions and --audio-description run "
                                  "locally")
            settings = RaySettings(ray_address, ray_workers, ray_cpus_per_worker, ray_gpus_per_worker, chunk_s,
                                   chunk_overlap_s)
            reports = process_on_ray(inputs, output, events, config, settings, models_dir, show_progress=not quiet,
                                     index=index)
            for report in reports:
                if report.status != "ok":
                    log.error("%s", report.message)
        else:
            reports = process_all(inputs, output, events, config, models_dir, show_progress=not quiet,
                                  captions=captions, audio_description=audio_description, in_flight=in_flight,
                                  index=index)
    except KeyboardInterrupt:
        log.error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SETUP_ERRORS as exc:
        _fail(exc, debug, EXIT_USAGE)
    except StreamvisError as exc:
        _fail(exc, debug, EXIT_FAILED)
    if len(reports) > 1:  # on a terminal the table fits its width; in a log or pipe every name is printed whole
        Console(stderr=True, width=None if sys.stderr.isatty() else 4000).print(summary_table(reports))
    if any(r.status == "interrupted" for r in reports):
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(r.status != "ok" for r in reports):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def serve(
    source: Annotated[list[str] | None, typer.Option(
        "--source", "-s", help="a source to serve (repeatable); none: streams come from WHIP publishers")] = None,
    pipeline: PipelineOpt = None,
    set_: SetOpt = None,
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    token: Annotated[str | None, typer.Option(envvar=env.TOKEN, help="required on every request")] = None,
    view_token: Annotated[str | None, typer.Option(
        envvar=env.VIEW_TOKEN, help="a second token that lets its holders watch and ask, but not prompt or publish")
    ] = None,
    certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM) for HTTPS")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    ice_server: Annotated[list[str] | None, typer.Option(
        "--ice-server", help="STUN/TURN for viewers outside the LAN: stun:host:port, turn:user:pass@host:port")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="a web origin whose pages may use the API, e.g. https://player.example.org "
                              "(repeatable; '*' any; default: any when --token is set, else none)")] = None,
    publish: Annotated[list[str] | None, typer.Option(
        "--publish", help="push a stream's annotated video and narration to a WHIP endpoint or a Janus VideoRoom: "
                          "STREAM=URL (or URL with one stream; repeatable); URL is https://.../whip/... or "
                          "janus+http://host:8088/janus?room=N")] = None,
    publish_token: Annotated[str | None, typer.Option(
        help="bearer token for the --publish endpoints (Janus: its API token)")] = None,
    codec: Annotated[str, typer.Option(help="video codec offered to viewers: h264 or vp8")] = "h264",
    loop: Annotated[bool, typer.Option("--loop", help="restart file sources when they end")] = False,
    record: Annotated[Path | None, typer.Option(
        "--record", help="record every stream as MP4 + JSONL segments into DIR/<stream>/: a camera's own stream "
                         "copied (no re-encoding, audio kept), anything else annotated")] = None,
    record_annotated: Annotated[bool, typer.Option(
        "--record-annotated", help="with --record: record the annotated video (re-encoded) for every stream")] = False,
    record_segment_s: Annotated[float, typer.Option(
        "--record-segment-s", help="start new recording files every this many seconds of stream time")] = 300.0,
    index: Annotated[Path | None, typer.Option(
        "--index", help="index every stream's tracks and scene keyframes into this file as they run, searchable "
                        "at GET /search and by `streamvis search`; needs --set embedder.type=clip (with --record "
                        "and an embedder: DIR/moments.duckdb)")] = None,
    alert: Annotated[list[str] | None, typer.Option(
        "--alert", help="with --index: a sentence a new track is checked against (repeatable), e.g. \"a person at "
                        "the door\"; a match is spoken, sent to viewers and POSTed to --alert-webhook")] = None,
    alert_threshold: Annotated[float, typer.Option(
        "--alert-threshold", help="cosine similarity a track's view must reach (CLIP-size models: about 0.25)")] = 0.25,
    alert_cooldown_s: Annotated[float, typer.Option(
        "--alert-cooldown-s", help="a sentence fires again on a stream only this long after its last alert")] = 60.0,
    alert_webhook: Annotated[str | None, typer.Option(
        "--alert-webhook", help="POST each alert as JSON to this http(s) URL")] = None,
    latency_budget_ms: Annotated[float | None, typer.Option(
        "--latency-budget-ms", help="keep every stream's p95 latency (a frame's decode to its packet) under this "
                                    "by giving up quality in a fixed order (latency.budget_ms)")] = None,
    models_dir: ModelsDirOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Serve annotated live video to browsers and WebRTC clients (viewer page, /offer, WHEP, /metrics)."""
    setup_logging(debug, False)
    from streamvis.config import load_pipeline
    from streamvis.live.settings import LiveSettings
    from streamvis.search.live import AlertSettings
    from streamvis.server.serve import Recording, build_streams, run, server_settings, ssl_context, stream_ids

    try:
        settings = server_settings(host, token, view_token, codec, ice_server or [], cors_origin, publish or [],
                                   publish_token, stream_ids(source or []))
        context = ssl_context(certfile, keyfile)
        if latency_budget_ms is not None and latency_budget_ms <= 0:
            raise ConfigError(f"--latency-budget-ms must be positive, got {latency_budget_ms:g}")
        overrides = [*(set_ or []), *([f"latency.budget_ms={latency_budget_ms}"] if latency_budget_ms else [])]
        config = load_pipeline(pipeline, overrides)
        recording = Recording.from_options(record, record_segment_s, record_annotated)
        alerts = AlertSettings.from_options(alert or [], alert_threshold, alert_cooldown_s, alert_webhook)
        live = LiveSettings(loop_files=loop)
        streams, make_stream = build_streams(source or [], config, models_dir, live, recording, index, alerts)
        settings.search = live.moments  # `--index`: what GET /search ranks
        run(streams, host, port, settings, context, make_stream)
    except SETUP_ERRORS as exc:
        _fail(exc, debug, EXIT_USAGE)
    except StreamvisError as exc:
        _fail(exc, debug, EXIT_FAILED)
    except OSError as exc:  # the port is taken, the address is not ours
        _fail(StreamvisError(f"cannot serve on {host}:{port}: {exc.strerror or exc}"), debug, EXIT_FAILED)


@app.command()
def cert(
    out: Annotated[Path, typer.Option("--out", help="folder for cert.pem and key.pem")] = Path("certs"),
    host: Annotated[list[str] | None, typer.Option("--host", help="names/addresses it is for (repeatable)")] = None,
    days: Annotated[int, typer.Option(help="validity in days")] = 365,
) -> None:
    """Make a self-signed certificate for HTTPS on a LAN (browsers give pages the camera only over HTTPS)."""
    setup_logging(False, False)
    from streamvis.server.serve import make_self_signed

    certfile, keyfile = make_self_signed(out, host or ["localhost", "127.0.0.1"], days)
    log.info("wrote %s and %s; serve with --certfile %s --keyfile %s", certfile, keyfile, certfile, keyfile)


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="hub id or folder: SAM 2.1 (facebook/sam2.1-hiera-tiny) or Florence-2")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="export folder (default: the cache)")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="half-precision graphs (for the CUDA provider)")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="int8 weight matmuls (for the CPU provider; see the GPU and ONNX "
                                                      "guide for the tolerance)")] = False,
    int8_range: Annotated[str, typer.Option(
        "--int8-range", help="int8 weights: auto (7-bit on CPUs without VNNI, where 8-bit saturates), full, "
                             "reduced (for AVX2-only machines)")] = "auto",
    calibrate: Annotated[str | None, typer.Option(
        "--calibrate", help="YOLOX --int8: a folder of images or a video to calibrate activation ranges on")] = None,
    calibration_frames: Annotated[int, typer.Option(
        "--calibration-frames", min=1, help="YOLOX --int8: frames taken from --calibrate")] = 128,
    models_dir: ModelsDirOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Export a model's parts to ONNX (dynamo exporter) with a manifest; `backend: onnx` in a pipeline uses them.
    For a YOLOX model (registry name or .onnx file), `--int8 --calibrate IMAGES_OR_VIDEO` writes a static int8
    copy to use as `detector.model`."""
    setup_logging(debug, False)
    from streamvis.exporting import export_int8_detector, export_parts, is_detector_file
    from streamvis.extras import require

    try:
        require("streamvis export", "export")
        if fp16 and int8:
            raise ConfigError("choose one of --fp16 and --int8")
        if int8_range not in ("auto", "full", "reduced"):
            raise ConfigError(f"--int8-range must be auto, full or reduced, got '{int8_range}'")
        range_choice = cast("Int8Range", int8_range)
        if is_detector_file(model):
            if not int8 or calibrate is None:
                raise ConfigError(f"{model} is an ONNX model already: export --int8 --calibrate IMAGES_OR_VIDEO "
                                  "makes its int8 copy; other exports take SAM 2.1 and Florence-2 hub ids or folders")
            export_int8_detector(model, models_dir, output, calibrate, calibration_frames, range_choice)
        else:
            export_parts(model, output, "fp16" if fp16 else "int8" if int8 else "fp32", range_choice)
    except SETUP_ERRORS as exc:
        _fail(exc, debug, EXIT_USAGE)
    except StreamvisError as exc:
        _fail(exc, debug, EXIT_FAILED)


def _fail(exc: BaseException, debug: bool, code: int) -> None:
    if debug:
        log.exception("%s", exc)
    else:
        log.error("%s", exc)
    raise typer.Exit(code)


@app.command("eval")
def eval_(
    clip: Annotated[Path, typer.Argument(help="a MOTChallenge sequence folder (seqinfo.ini, img1/, gt/gt.txt), a "
                                              "video (with --gt), a YOLO-format image folder (images/, labels/), "
                                              "or images with ICDAR-style text labels (img_1.jpg + img_1.txt)")],
    gt: Annotated[Path | None, typer.Option("--gt", help="MOTChallenge gt.txt in the clip's own pixels")] = None,
    pipeline: PipelineOpt = None,
    set_: SetOpt = None,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", help="another setting side by side: NAME=key=value[,key=value...] (repeatable), e.g. "
                          "sort=tracker.type=sort")] = None,
    class_name: Annotated[str, typer.Option("--class", help="the class scored against the labels")] = "person",
    iou: Annotated[float, typer.Option(help="IoU that counts as a match (CLEAR, identity)")] = 0.5,
    out: Annotated[Path | None, typer.Option("--out", help="keep each run's tracks (MOTChallenge lines) here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the metrics as JSON")] = False,
    models_dir: ModelsDirOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Track a labelled clip and score it (HOTA, MOTA, IDF1, ID switches, by trackers.eval), or detect on labelled
    images (a YOLO-format folder: COCO box mAP, by pycocotools), or read labelled text (word recall and precision,
    character error rate, by text height), for one or several settings side by side, so the detector, tracker,
    reader and thresholds can be chosen for these cameras."""
    import json
    import tempfile

    from streamvis import evaluation as ev

    setup_logging(debug, False)
    try:
        if not 0 < iou <= 1:
            raise ConfigError(f"--iou must be in (0, 1], got {iou:g}")
        variants = [ev.Variant("default"), *(ev.parse_variant(v) for v in variant or [])]
        dataset = ev.find_image_dataset(clip) if clip.is_dir() and gt is None else None
        texts = ev.find_text_dataset(clip) if clip.is_dir() and gt is None and dataset is None else None
        columns: tuple[str, ...]
        if texts is not None:
            rows = ev.evaluate_texts(str(clip), texts, variants, pipeline or "narrate", set_ or [])
            columns = ev.TEXT_COLUMNS
            title = f"streamvis eval: {clip} (text read, {rows[0].frames} labelled images)"
        elif dataset is not None:
            rows = ev.evaluate_images(str(clip), dataset, variants, pipeline, set_ or [], models_dir)
            columns = ev.COCO_STATS
            title = f"streamvis eval: {clip} (COCO box AP of the detector, {rows[0].frames} images)"
        else:
            labelled = ev.find_labelled(clip, gt)
            folder = out or Path(tempfile.mkdtemp(prefix="streamvis-eval-"))
            rows = ev.evaluate_clip(labelled, variants, pipeline, set_ or [], folder, class_name, iou, models_dir)
            columns = ev.TRACK_COLUMNS
            title = f"streamvis eval: {labelled.name} ({rows[0].frames} frames, class {class_name}, IoU {iou:g})"
    except SETUP_ERRORS as exc:
        _fail(exc, debug, EXIT_USAGE)
    except (StreamvisError, OSError, ValueError) as exc:
        _fail(StreamvisError(str(exc)), debug, EXIT_FAILED)
    if as_json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 200).print(ev.results_table(title, columns, rows))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to find, in words: \"a red car\", \"a dog in the garden\"")],
    index: Annotated[Path, typer.Argument(help="an index file made by process --index or serve --index")],
    top: Annotated[int, typer.Option("--top", min=1, max=1000, help="moments to list")] = 10,
    stream: Annotated[str | None, typer.Option("--stream", help="only this stream (an input's name)")] = None,
    class_name: Annotated[str | None, typer.Option("--class", help="only tracks of this class")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="seconds into the video (process --index), or a date and time (serve --index: "
                        "2026-12-06T09:30)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="as --since")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="cut each moment (a second either side) out of the video its run wrote, or its stream's "
                         "recording (serve --record), packets copied, into this folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the moments as JSON")] = False,
    debug: DebugOpt = False,
) -> None:
    """Moments that match a sentence, best first: tracks (their first and last second, class, a thumbnail) and
    scene keyframes, ranked by the similarity of the index's image-text embeddings to the sentence's."""
    import json

    from streamvis.search.finding import find, moments_table

    setup_logging(debug, True)
    try:
        result = find(query, index, top, stream, class_name, since, until, export)
    except SETUP_ERRORS as exc:
        _fail(exc, debug, EXIT_USAGE)
    except StreamvisError as exc:
        _fail(exc, debug, EXIT_FAILED)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    Console(width=None if sys.stdout.isatty() else 200).print(moments_table(query, index, result))
    for rank, clip in result.clips.items():
        print(f"{rank}: {clip}")


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """What this machine and environment hold, for a bug report: versions, CPU flags and int8 class, onnxruntime
    providers really usable, torch/CUDA/GPU, FFmpeg codecs, extras, programs, the models folder and the cache."""
    import json

    from streamvis.doctor import lines, report

    data = report()
    print(json.dumps(data, indent=2) if as_json else "\n".join(lines(data)))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
