"""Lower-precision copies of exported graphs: int8 for the CPU path, fp16 for CUDA.

- `int8`: dynamic quantization (onnxruntime.quantization) of the weight matrix multiplies only, int8 weights
  per output channel, activations quantized per call. Attention's activation-by-activation products, norms and
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

import logging
from pathlib import Path
from typing import Literal

from streamvis.errors import ModelError
from streamvis.runtime.quiet import quiet_tools

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
# the stated int8 tolerance (module docstring); the tests check exports against it
INT8_MIN_COSINE = 0.998
INT8_MAX_RELATIVE = 0.10
INT8_MIN_MASK_IOU = 0.95


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


def _data_file(path: Path) -> Path:
    return path.with_name(path.name + ".data")


def to_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of `source`'s weight MatMuls into `target` (weights beside it)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, activations = weight_matmuls(onnx.load(str(source), load_external_data=False))
    quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=True,
                     weight_type=QuantType.QInt8, nodes_to_exclude=activations, use_external_data_format=True,
                     extra_options={"MatMulConstBOnly": True})
    return target


def to_fp16(source: Path, target: Path) -> Path:
    """Half-precision weights and arithmetic, fp32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target), save_as_external_data=True, location=_data_file(target).name)
    return target


def lower_precision(folder: Path, file: str, precision: Precision) -> str:
    """Replace the fp32 graph `folder/file` by its `precision` copy; returns the new file's name."""
    if precision == "fp32":
        return file
    source = folder / file
    target = source.with_name(f"{source.stem}.{precision}.onnx")
    log.info("converting %s to %s...", file, precision)
    try:
        with quiet_tools():
            (to_int8 if precision == "int8" else to_fp16)(source, target)
    except Exception as exc:  # onnx and the quantizer raise many kinds
        raise ModelError(f"converting {source} to {precision} failed: {str(exc).splitlines()[0]}") from exc
    for done in (source, _data_file(source)):
        done.unlink(missing_ok=True)
    return target.name
