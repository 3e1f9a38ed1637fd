"""Lower-precision copies of exported graphs: int8 for the CPU path, fp16 for CUDA.

- `int8`: dynamic quantization (onnxruntime.quantization) of the weight matrix multiplies only, int8 weights
  per output channel, activations quantized per call. onnxruntime's u8s8 kernels differ by CPU: with VNNI
  (AVX-512 VNNI, AVX-VNNI, AMX) they are exact; on x86 CPUs with AVX2 only they add pairs of products in 16 bits
  (`vpmaddubsw`) and saturate on full-range weights. So an export made for a CPU without VNNI keeps weights in
  7 bits (`reduce_range`: |w| <= 64, a pair of products stays below 2**15), and is then exact there too; the
  export chooses by the CPU it runs on (`int8_range`: auto) and records the choice, and loading a full-range
  export on a CPU without VNNI warns. Attention's activation-by-activation products, norms and
  softmax stay fp32. On a 2-core AVX-512 VNNI CPU the SAM 2.1-tiny image encoder runs about 1.5x faster than
  torch and 1.6x faster than fp32 (benchmarks/runtime.py). The stated tolerance against fp32, measured on
  random real-size weights and checked by the tests on tiny ones: each encoder output's cosine similarity
  >= 0.998 and max abs difference <= 10% of the output's largest magnitude (fp32 itself is within 1e-4
  absolute of torch); tracked masks overlap fp32's at IoU >= 0.95 per object per frame. Florence-2 in int8
  may write other tokens than fp32 (greedy decoding follows the argmax); benchmarks/runtime.py reports how
  many agree.
- `fp16`: weights and arithmetic in half precision (onnxruntime.transformers.float16), inputs and outputs kept
  fp32 so the callers do not change. Meant for the CUDA provider; TensorRT takes the fp32 graph and builds its
  own fp16 engine (`trt_fp16_enable`). The CPU provider runs it, slowly, by casting back to fp32.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path
from typing import Literal

from streamvis.errors import ModelError
from streamvis.runtime.quiet import quiet_tools

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]
Int8Range = Literal["auto", "full", "reduced"]
CpuClass = Literal["vnni", "avx2"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
# the stated int8 tolerance (module docstring); the tests check exports against it
INT8_MIN_COSINE = 0.998
INT8_MAX_RELATIVE = 0.10
INT8_MIN_MASK_IOU = 0.95


_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def cpu_int8_class() -> CpuClass:
    """`avx2` for an x86-64 CPU without VNNI (u8s8 int8 saturates there), else `vnni` (other CPUs: exact)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return "vnni"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "avx2"  # unknown: the safe choice
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "vnni" if _VNNI_FLAGS & set(flags) else "avx2"


def reduce_range_for(int8_range: Int8Range) -> bool:
    """Whether an int8 export keeps weights in 7 bits: `auto` does on CPUs without VNNI."""
    if int8_range == "auto":
        return cpu_int8_class() == "avx2"
    return int8_range == "reduced"


def weight_matmuls(model: object) -> tuple[list[str], list[str]]:
    """Names of the MatMul nodes whose second input is a stored weight, and of the others."""
    graph = model.graph  # type: ignore[attr-defined]
    weights = {init.name for init in graph.initializer}
    weighted: list[str] = []
    other: list[str] = []
    for node in graph.node:
        if node.op_type == "MatMul":
            (weighted if node.input[1] in weights else other).append(node.name)
    return weighted, other


def data_file(path: Path) -> Path:
    """Where a graph's weights live when they are kept outside it (over 2 GB)."""
    return path.with_name(path.name + ".data")


def to_int8(source: Path, target: Path, reduce_range: bool = False) -> Path:
    """Dynamic int8 quantization of `source`'s weight MatMuls into `target` (weights beside it); `reduce_range`
    keeps weights in 7 bits so that CPUs without VNNI compute them exactly."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, activations = weight_matmuls(onnx.load(str(source), load_external_data=False))
    quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=reduce_range,
                     weight_type=QuantType.QInt8, nodes_to_exclude=activations, use_external_data_format=True,
                     extra_options={"MatMulConstBOnly": True})
    return target


def warn_if_int8_saturates(part: dict[str, object], name: str) -> None:
    """A full-range int8 export run on a CPU without VNNI loses accuracy: say so (once per part and process)."""
    if part.get("precision") == "int8" and not part.get("int8_reduce_range", False) and cpu_int8_class() == "avx2":
        _warn_once(name)


@functools.cache
def _warn_once(name: str) -> None:
    log.warning("%s: this int8 export keeps full-range weights (made on a CPU with VNNI); this CPU has AVX2 without "
                "VNNI, where they saturate and masks lose accuracy: export again here (streamvis export --int8)", name)


def to_fp16(source: Path, target: Path) -> Path:
    """Half-precision weights and arithmetic, fp32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target), save_as_external_data=True, location=data_file(target).name)
    return target


def lower_precision(folder: Path, file: str, precision: Precision, reduce_range: bool = False) -> str:
    """Replace the fp32 graph `folder/file` by its `precision` copy; returns the new file's name."""
    if precision == "fp32":
        return file
    source = folder / file
    target = source.with_name(f"{source.stem}.{precision}.onnx")
    log.info("converting %s to %s...", file, precision)
    try:
        with quiet_tools():
            if precision == "int8":
                to_int8(source, target, reduce_range)
            else:
                to_fp16(source, target)
    except Exception as exc:  # onnx and the quantizer raise many kinds
        raise ModelError(f"converting {source} to {precision} failed: {str(exc).splitlines()[0]}") from exc
    for done in (source, data_file(source)):
        done.unlink(missing_ok=True)
    return target.name
