"""`streamvis process`: expand inputs, name outputs, run each input in isolation, summarise."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.table import Table

from streamvis.config import ClipEmbedderConfig, PipelineConfig
from streamvis.errors import ConfigError, StreamvisError
from streamvis.offline.runner import default_in_flight, run_offline
from streamvis.pipeline.loading import Models, load_models
from streamvis.pipeline.step import Pipeline
from streamvis.progress import FrameProgress
from streamvis.sinks import AudioDescriptionTrack, CaptionsWriter, EventsWriter, Sink, Sinks, VideoWriter
from streamvis.sinks.containers import is_video_name, output_format
from streamvis.sources import Source, open_source, parse_source_uri
from streamvis.sources.uri import IMAGE_SUFFIXES, VIDEO_SUFFIXES

if TYPE_CHECKING:
    from streamvis.search.index import MomentIndex

log = logging.getLogger(__name__)

Status = Literal["ok", "incomplete", "failed", "interrupted"]


@dataclass(slots=True)
class InputReport:
    input: str
    output: Path | None = None
    events: Path | None = None
    captions: Path | None = None
    frames: int = 0
    seconds: float = 0.0
    status: Status = "ok"
    message: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def note(self, text: str) -> None:
        self.message = f"{self.message}; {text}" if self.message else text


def expand_inputs(inputs: list[str]) -> list[str]:
    """Folders of videos become one input per video; a folder of images (or a glob) stays one input."""
    expanded: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if videos:
                expanded.extend(str(v) for v in videos)
                continue
            if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
                media = sorted(str(sub) for sub in path.iterdir() if sub.is_dir() and any(
                    p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES for p in sub.iterdir()))
                hint = f" (media in its subfolders: give {', '.join(media[:3])})" if media else ""
                raise ConfigError(f"no videos or images in folder {item}{hint}")
        expanded.append(item)
    return expanded


def output_stem(uri: str) -> str:
    """A file-name stem for an input: the file's stem, or the URL/device made safe."""
    spec = parse_source_uri(uri)
    if spec.kind == "file":
        return Path(spec.target).stem
    if spec.kind == "images":
        target = spec.target.split("*")[0].rstrip("/") or "images"
        return Path(target).stem or "images"
    text = re.sub(r"^[a-z]+:/*", "", uri)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "stream"


_FILE_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{1,4}")


def names_a_file(path: Path, option: str, suffix: str) -> bool:
    """Whether `path` (given to `option`) names one `suffix` file rather than a folder. A name with another
    file-like suffix (`x.json` for `--events`) is a `ConfigError`: it would otherwise become a folder."""
    if path.suffix.lower() == suffix:
        return True
    if _FILE_SUFFIX.fullmatch(path.suffix) and not path.is_dir():
        raise ConfigError(f"{option} {path}: expected a {suffix} file or a folder, got a {path.suffix} name")
    return False


def plan_outputs(inputs: list[str], output: Path, events: Path | None) -> list[tuple[str, Path, Path | None]]:
    """(input, video, jsonl) per input. One input: `output` may name the video file (its suffix picks the
    container). Several: `output` is a folder of MP4s."""
    if is_video_name(output) and not output.is_dir():
        output_format(output)  # a container streamvis does not write is an error, never a folder of that name
        if len(inputs) > 1:
            raise ConfigError(f"--output {output}: several inputs need an output folder, not a {output.suffix} file")
        events_file = events is not None and names_a_file(events, "--events", ".jsonl")
        return [(inputs[0], output, events if events_file or events is None else
                 events / f"{output.stem}.jsonl")]
    if events is not None and names_a_file(events, "--events", ".jsonl") and len(inputs) > 1:
        raise ConfigError(f"--events {events}: several inputs need an events folder, not a .jsonl file")
    plans, used = [], set()
    for uri in inputs:
        stem = output_stem(uri)
        unique, n = stem, 2
        while unique in used:
            unique, n = f"{stem}_{n}", n + 1
        used.add(unique)
        if len(inputs) == 1 and events is not None and events.suffix.lower() == ".jsonl":
            event_path: Path | None = events
        else:
            event_path = events / f"{unique}.jsonl" if events is not None else None
        plans.append((uri, output / f"{unique}.mp4", event_path))
    return plans


def open_outputs(output: Path, events: Path | None, source: Source, config: PipelineConfig,
                 captions: Path | None = None, audio_description: bool = False,
                 moments: Sink | None = None) -> tuple[VideoWriter, Sinks]:
    """The outputs of one input, for local and Ray runs alike: the video (with the source's audio), the JSONL
    events, WebVTT captions, the spoken audio-description track (closed after the video, into which it muxes),
    and the moments for the index. The caller closes the writer first, knowing how the input ended, then the
    sinks."""
    writer = VideoWriter(output, source.fps, config.output, source.time_base, source.audio_path)
    sinks = Sinks([writer] if moments is None else [writer, moments])
    if events is not None:
        sinks.sinks.append(EventsWriter(events))
    if captions is not None:
        sinks.sinks.append(CaptionsWriter(captions, config.narrator.speech_rate_wpm))
    if audio_description:
        sinks.sinks.append(AudioDescriptionTrack(writer, config.narrator.voice, config.narrator.speech_rate_wpm))
    return writer, sinks


def process_input(uri: str, output: Path, events: Path | None, config: PipelineConfig, models: Models,
                  show_progress: bool = True, captions: Path | None = None,
                  audio_description: bool = False, in_flight: int | None = None,
                  index: MomentIndex | None = None) -> InputReport:
    """Process one input; never raises a `StreamvisError` (it becomes the report's status)."""
    report = InputReport(uri)
    try:
        source = open_source(uri, config.source)
    except StreamvisError as exc:
        report.status, report.message = "failed", str(exc)
        return report
    try:
        pipeline = Pipeline(config, models, source.fps)
    except BaseException:
        source.close()
        raise
    complete = False
    moments = None
    if index is not None and models.embedder is not None and isinstance(config.embedder, ClipEmbedderConfig):
        from streamvis.search.collect import MomentCollector

        moments = MomentCollector(index, models.embedder, output.stem, config.embedder, output, uri)
    try:
        writer, sinks = open_outputs(output, events, source, config, captions, audio_description, moments)
    except BaseException:
        source.close()
        raise
    try:
        report.events = events
        with FrameProgress(source.source_id, source.expected_frames, enabled=show_progress) as bar:
            outcome = run_offline(source, pipeline, sinks, bar.update, in_flight)
        report.seconds = outcome.seconds
        if outcome.interrupted:
            report.status = "interrupted"
            report.message = f"interrupted after {outcome.frames} frames"
        elif source.report.incomplete:
            report.status, report.message = "incomplete", source.report.incomplete
        else:
            complete = True
        if outcome.gated_keyframes:
            report.note(f"motion gating skipped {outcome.gated_keyframes} of "
                        f"{outcome.gated_keyframes + outcome.detector_runs} keyframes")
        if outcome.cropped_keyframes:
            report.note(f"{outcome.cropped_keyframes} of {outcome.detector_runs} detector runs saw only the moving "
                        "part of the frame")
    except StreamvisError as exc:
        report.status, report.message = "failed", str(exc)
    except Exception as exc:  # isolation boundary: one input's failure must not stop the others
        log.debug("%s failed", uri, exc_info=True)
        report.status, report.message = "failed", f"unexpected {exc.__class__.__name__}: {exc}"
    finally:
        report.frames = writer.frames
        writer.close(complete=complete)  # first, knowing how the input ended (audio up to its end, or the cut)
        try:
            sinks.close()
        except StreamvisError as exc:  # the audio-description mux, a full disk: the video is already safe
            report.status, report.message = "failed", str(exc)
        report.captions = captions if captions is not None and writer.frames else None
        if writer.frames:
            report.output = output
    if report.status != "ok" and report.frames:
        report.message += f"; the output holds the {report.frames} frames processed"
    return report


def summary_table(reports: list[InputReport]) -> Table:
    """Every input of a `process` run: its status, frames, speed, output and what went wrong."""
    table = Table(title="streamvis process", show_lines=False)
    for column in ("input", "status", "frames", "fps", "output", "note"):
        table.add_column(column)
    for r in reports:
        style = {"ok": "green", "incomplete": "yellow", "interrupted": "yellow", "failed": "red"}[r.status]
        table.add_row(r.input, f"[{style}]{r.status}[/]", str(r.frames), f"{r.fps:.1f}",
                      str(r.output or "-"), r.message)
    return table


def process_all(inputs: list[str], output: Path, events: Path | None, config: PipelineConfig,
                models_dir: str | Path | None = None, show_progress: bool = True,
                captions: Path | None = None, audio_description: bool = False,
                in_flight: int | None = None, index: Path | None = None) -> list[InputReport]:
    """Every input in turn; a failure in one does not stop the others; Ctrl-C stops after finalising.

    Models are loaded once (`load_models`); each input gets fresh tracking, segmentation and narration state.
    """
    plans = plan_outputs(expand_inputs(inputs), output, events)
    if (captions is not None or audio_description) and not config.narrator.enabled:
        raise ConfigError("--captions and --audio-description need a narrator: use -p narrate or set "
                          "narrator.type (florence2 or vlm)")
    captions_file = captions is not None and names_a_file(captions, "--captions", ".vtt")
    if captions_file and len(plans) > 1:
        raise ConfigError(f"--captions {captions}: several inputs need a captions folder, not a .vtt file")
    if index is not None and not isinstance(config.embedder, ClipEmbedderConfig):
        raise ConfigError(f"--index {index}: needs an embedder to turn tracks into vectors: --set embedder.type=clip "
                          "(embedder.model: a CLIP or SigLIP hub id or folder)")
    depth = in_flight or default_in_flight()
    # several frames in flight spread the detector over the cores: each run then takes one thread, unspinning
    models = load_models(config, models_dir, detector_threads=1 if depth > 1 else None)
    reports = []
    moment_index = None
    if index is not None and models.embedder is not None:
        from streamvis.search.index import MomentIndex

        moment_index = MomentIndex(index, models.embedder.name, models.embedder.dim)
    try:
        for uri, mp4, jsonl in plans:
            vtt = None
            if captions is not None:
                vtt = captions if captions_file else captions / f"{mp4.stem}.vtt"
            report = process_input(uri, mp4, jsonl, config, models, show_progress, vtt, audio_description, depth,
                                   moment_index)
            reports.append(report)
            if report.status == "ok":
                log.info("%s -> %s (%d frames, %.1f fps)", uri, mp4, report.frames, report.fps)
            else:
                named = uri in report.message or Path(uri).name in report.message
                log.error("%s", report.message if named else f"{uri}: {report.message}")
                if report.status == "interrupted":
                    break
    finally:
        if moment_index is not None:
            moment_index.close()
    return reports
