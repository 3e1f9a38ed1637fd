"""The one place that creates onnxruntime sessions and chooses execution providers."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamvis.errors import ModelError

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def import_onnxruntime() -> Any:
    """Import onnxruntime, or say how to install it; warn once where both builds are installed
    (`extras.onnxruntime_conflict`: they overwrite each other's files)."""
    from streamvis.extras import onnxruntime_conflict

    conflict = onnxruntime_conflict()
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError(conflict or "onnxruntime cannot be imported: pip install onnxruntime") from exc
    if conflict:
        log.warning("%s", conflict)
    return onnxruntime


def choose_providers(wanted: list[str], available: list[str]) -> list[str]:
    """The wanted providers (short names, in order) that this onnxruntime build offers; CPU always last."""
    chosen = [PROVIDER_NAMES[name] for name in wanted if PROVIDER_NAMES[name] in available]
    if PROVIDER_NAMES["cpu"] not in chosen:
        chosen.append(PROVIDER_NAMES["cpu"])
    return chosen


def tensorrt_options(cache: Path) -> dict[str, Any]:
    """TensorRT with fp16 and persistent engine and timing caches (the first build takes minutes)."""
    cache.mkdir(parents=True, exist_ok=True)
    return {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)}


def engine_cached(cache: Path) -> bool:
    """Whether a TensorRT engine was already built into `cache` (onnxruntime names them *.engine)."""
    return cache.is_dir() and any(cache.glob("*.engine"))


@contextlib.contextmanager
def engine_build(name: str, active: bool) -> Iterator[None]:
    """Visible progress while TensorRT builds an engine: a spinner with the elapsed time on a terminal, log
    lines otherwise. TensorRT reports no fraction done, so this says what runs and for how long."""
    if not active:
        yield
        return
    start = time.perf_counter()
    message = f"{name}: building the TensorRT engine (first run only; cached afterwards)"
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(message, spinner="dots"):
            yield
    else:
        log.info("%s...", message)
        yield
    log.info("%s: TensorRT engine ready in %.1f s", name, time.perf_counter() - start)


def create_session(path: Path, providers: list[str], name: str, threads: int | None = None,
                   spin_wait: bool = True, graph: bytes | None = None) -> tuple[Any, str]:
    """An InferenceSession and the provider really in use (a GPU build lists CUDA even without a GPU).

    `graph`: the graph's bytes when they are a copy of the file at `path` changed in memory.

    `threads`: intra-op threads (None: onnxruntime's default, one per physical core). `spin_wait`: whether idle
    intra-op threads spin between runs (onnxruntime's default): a little lower latency for one run at a time,
    but the spinning takes the cores that the decoder, the encoder and other runs need.
    """
    ort = import_onnxruntime()
    chosen: list[Any] = choose_providers(providers, ort.get_available_providers())
    building = False
    if PROVIDER_NAMES["tensorrt"] in chosen:
        cache = path.parent / "tensorrt-cache"
        building = not engine_cached(cache)
        chosen = [(p, tensorrt_options(cache)) if p == PROVIDER_NAMES["tensorrt"] else p for p in chosen]
        log.info("%s: TensorRT engine cache in %s", name, cache)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        with engine_build(name, building):
            session = ort.InferenceSession(graph if graph is not None else str(path), sess_options=options,
                                           providers=chosen)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"cannot load {name} from {path}: {first}") from exc
    in_use = session.get_providers()[0]
    short = next((k for k, v in PROVIDER_NAMES.items() if v == in_use), in_use)
    if PROVIDER_NAMES[providers[0]] != in_use:
        log.info("%s: %s requested, running on %s", name, providers[0], short)
    log.info("%s: onnxruntime %s, provider in use: %s", name, ort.__version__, short)
    return session, short


class OrtRunner:
    """A session (on the graph's fused variant unless TensorRT runs it) run through IO binding: inputs are
    bound where they already are (a CUDA tensor stays on the GPU), outputs are left on the provider's device
    and come back as torch tensors over DLPack (no copy) or as OrtValues that feed the next run directly
    (Florence-2's KV cache). On the CPU provider the same code runs with host memory, which is what the tests
    exercise."""

    def __init__(self, path: Path, providers: list[str], name: str) -> None:
        from streamvis.runtime.optimize import fused_variant

        building = not engine_cached(path.parent / "tensorrt-cache")
        ort = import_onnxruntime()
        self._ort_value = ort.OrtValue
        available = ort.get_available_providers()
        try:
            if choose_providers(providers, available)[0] != PROVIDER_NAMES["tensorrt"]:
                path = fused_variant(path)  # CPU and CUDA run onnxruntime's fused operators
            self.session, self.provider = create_session(path, providers, name)
        except ModelError as exc:
            raise ModelError(f"{exc} (a damaged export: delete {path.parent} to export it again on first use, "
                             "or run streamvis export)") from exc
        self.name = name
        self.device = "cuda" if self.provider in ("cuda", "tensorrt") else "cpu"
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = {i.name for i in self.session.get_inputs()}  # the fused variant drops unused inputs
        # with dynamic shapes TensorRT builds its engine on the first run rather than at load
        self.builds_engine = self.provider == "tensorrt" and building

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run with numpy arrays, OrtValues or torch tensors as inputs; returns OrtValues."""
        import numpy as np

        binding = self.session.io_binding()
        alive: list[Any] = []  # what the binding points into must outlive the run
        for name, value in feeds.items():
            if name not in self.inputs:
                continue
            if isinstance(value, np.ndarray):
                array = np.ascontiguousarray(value)
                alive.append(array)
                binding.bind_cpu_input(name, array)
            elif isinstance(value, self._ort_value):
                binding.bind_ortvalue_input(name, value)
            else:  # a torch tensor: bound in place
                tensor = value.detach().contiguous()
                alive.append(tensor)
                on_gpu = tensor.is_cuda and self.device == "cuda"
                if not on_gpu:
                    tensor = tensor.cpu()
                    alive.append(tensor)
                binding.bind_input(name, "cuda" if on_gpu else "cpu", tensor.device.index or 0,
                                   _numpy_dtype(tensor), tuple(tensor.shape), tensor.data_ptr())
        for name in self.outputs:
            binding.bind_output(name, self.device)
        with engine_build(self.name, self.builds_engine):
            self.session.run_with_iobinding(binding)
        self.builds_engine = False
        return list(binding.get_outputs())

    def run_torch(self, feeds: dict[str, Any]) -> list[Any]:
        """`run`, with the outputs as torch tensors on the provider's device."""
        import torch

        return [torch.from_dlpack(value) for value in self.run(feeds)]


def _numpy_dtype(tensor: Any) -> Any:
    import numpy as np
    import torch

    types = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32,
             torch.bool: np.bool_}
    if tensor.dtype not in types:
        raise ModelError(f"onnxruntime input of type {tensor.dtype} is not supported; cast it to float32")
    return types[tensor.dtype]
