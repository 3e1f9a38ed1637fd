"""Narration latency: from a trigger to the text, and to the first audio, in one run.

    .venv/bin/python benchmarks/narration.py [--repeats 3] [--device auto] [--tokens 20]

Backends at their real sizes with random weights (Florence-2-base `<CAPTION>`; a SmolVLM-256M-architecture
Idefics3 chat VLM), each made to write exactly `--tokens` tokens, on a 1280x720 frame with one detected person.
Speech is espeak-ng on a representative 14-word description (random weights write no real words). "First audio"
is text plus synthesis plus one 20 ms audio frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import supervision as sv
import torch
from results import save_table
from rich.console import Console
from rich.table import Table

from streamvis.config import Florence2NarratorConfig, VlmNarratorConfig
from streamvis.frame import Frame
from streamvis.narration.backends import ChatVLMNarrator, FlorenceNarrator
from streamvis.narration.narrator import Narrator
from streamvis.narration.policy import Trigger
from streamvis.narration.speech import synthesize
from streamvis.testing.models import build_florence2
from streamvis.testing.vlm import build_idefics3

SENTENCE = "A man is standing in a small room in front of a white door. Person ahead, close."


def p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    image = np.full((720, 1280, 3), 90, np.uint8)
    image[150:650, 500:760] = (40, 80, 160)
    frame = Frame(image, 0, 0.0, "bench")
    person = sv.Detections(xyxy=np.array([[500, 150, 760, 650]], np.float32), confidence=np.ones(1, np.float32),
                           class_id=np.zeros(1, int), data={"class_name": np.array(["person"])})
    tts = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        synthesize(SENTENCE)
        tts.append((time.perf_counter() - start) * 1e3)
    tts = tts[1:]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = [("Florence-2-base <CAPTION>", "florence2", build_florence2(Path(tmp) / "f", preset="real")),
                 ("SmolVLM-256M-architecture chat VLM", "vlm", build_idefics3(Path(tmp) / "s", preset="real"))]
        for label, kind, folder in specs:
            config_cls = Florence2NarratorConfig if kind == "florence2" else VlmNarratorConfig
            config = config_cls(model=str(folder), max_new_tokens=args.tokens, device=args.device)
            backend = FlorenceNarrator(config) if kind == "florence2" else ChatVLMNarrator(config)
            backend.model.generation_config.min_new_tokens = args.tokens
            narrator = Narrator(config, backend)
            samples = []
            for i in range(args.repeats + 1):
                start = time.perf_counter()
                narrator.describe(frame, person, Trigger("start"))  # timed whether or not dedup drops it
                if i:
                    samples.append((time.perf_counter() - start) * 1e3)
            rows.append((f"{label}, {args.tokens} tokens", samples, backend.provider))
    table = Table(title=f"streamvis narration latency, random weights at real sizes, {os.cpu_count()} CPUs, "
                        f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    for column in ("backend", "runs on", "trigger -> text p50 ms", "p95 ms", "trigger -> first audio p50 ms",
                   "p95 ms"):
        table.add_column(column, justify="left" if column in ("backend", "runs on") else "right")
    tts50, tts95 = p50_p95(tts)
    for label, samples, provider in rows:
        p50, p95 = p50_p95(samples)
        table.add_row(label, provider, f"{p50:.0f}", f"{p95:.0f}", f"{p50 + tts50 + 20:.0f}", f"{p95 + tts95 + 20:.0f}")
    table.add_row("espeak-ng, 16 words", "cpu", f"{tts50:.0f}", f"{tts95:.0f}", "", "")
    Console(width=160).print(table)
    save_table("narration", table)


if __name__ == "__main__":
    main()
