"""The `streamvis` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streamvis import __version__
from streamvis.errors import ConfigError, StreamvisError
from streamvis.logs import setup_logging

log = logging.getLogger("streamvis")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Real-time video detection, tracking and segmentation.")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PipelineOpt = Annotated[str | None, typer.Option("--pipeline", "-p", help="pipeline file or name (default: detect)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a pipeline field: key=value (repeatable)")]
ModelsDirOpt = Annotated[Path | None, typer.Option("--models-dir", envvar="STREAMVIS_MODELS_DIR",
                                                   help="local models folder (offline use)")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="verbose logs and tracebacks")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamvis {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False) -> None:
    """streamvis: files, cameras and streams in; annotated video and detections out."""


def _summary(reports: list) -> None:
    table = Table(title="streamvis process", show_lines=False)
    for column in ("input", "status", "frames", "fps", "output", "note"):
        table.add_column(column)
    for r in reports:
        style = {"ok": "green", "incomplete": "yellow", "interrupted": "yellow", "failed": "red"}[r.status]
        table.add_row(r.input, f"[{style}]{r.status}[/]", str(r.frames), f"{r.fps:.1f}",
                      str(r.output or "-"), r.message)
    Console(stderr=True).print(table)


@app.command()
def process(
    inputs: Annotated[list[str], typer.Argument(help="video files, folders, image globs, URLs, cameras, synthetic:")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output .mp4 (one input) or folder")],
    events: Annotated[
        Path | None, typer.Option("--events", help="per-frame detections: .jsonl (one input) or folder")
    ] = None,
    pipeline: PipelineOpt = None,
    set_: SetOpt = None,
    models_dir: ModelsDirOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress, warnings and errors only")] = False,
    debug: DebugOpt = False,
) -> None:
    """Annotate recorded videos (or any source) into browser-playable MP4s plus per-frame JSONL."""
    setup_logging(debug, quiet)
    from streamvis.batch import process_all
    from streamvis.config import load_pipeline

    try:
        config = load_pipeline(pipeline, set_ or [])
        reports = process_all(inputs, output, events, config, models_dir, show_progress=not quiet)
    except KeyboardInterrupt:
        log.error("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except ConfigError as exc:
        _fail(exc, debug, EXIT_USAGE)
    except StreamvisError as exc:
        _fail(exc, debug, EXIT_FAILED)
    if len(reports) > 1:
        _summary(reports)
    if any(r.status == "interrupted" for r in reports):
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(r.status != "ok" for r in reports):
        raise typer.Exit(EXIT_FAILED)


def _fail(exc: BaseException, debug: bool, code: int) -> None:
    if debug:
        log.exception("%s", exc)
    else:
        log.error("%s", exc)
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
