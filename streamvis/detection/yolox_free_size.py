"""A YOLOX graph whose input height and width are free, so each frame can go in at its own shape.

YOLOX is convolutional through and through: its official exports declare a fixed square input (416 x 416 for
nano and tiny, 640 x 640 for s to x), but nothing inside depends on it (the head's Reshapes keep the anchor count
free, the upsampling is by a scale). With the input's height and width declared free, a 768 x 432 frame goes
in as 416 x 256 at the same scale instead of letterboxed into 416 x 416: 0.62 of the pixels, and of the
convolutions' work on a CPU (`YoloxDetector`, `detector.fit_input`).

The change is made in memory on the graph's protobuf bytes, at each load, in milliseconds: the input's last two
dimensions become named ones, the output's anchor axis too, and the shapes inferred for the square input
(`value_info`) go. Written on the protobuf wire format rather than with the `onnx` package, which would bring
34 MB and a second of import into the light install to change two numbers; the format is protobuf's own and
stable, and the tests check the result against `onnx`'s reading of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamvis.errors import ModelError, reason

# field numbers of onnx.proto
MODEL_GRAPH = 7
GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 5, 11, 12, 13
TENSOR_NAME = 8
VALUE_INFO_NAME, VALUE_INFO_TYPE = 1, 2
TYPE_TENSOR = 1
TENSOR_TYPE_SHAPE = 2
SHAPE_DIM = 1
DIM_VALUE, DIM_PARAM = 1, 2
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

Field = tuple[int, int, bytes | memoryview]  # (number, wire type, payload: a varint's bytes or a field's contents)


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("a number runs past the end")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(data: bytes | memoryview) -> list[Field]:
    """A message's fields in order, their payloads as views into `data` (nothing copied)."""
    view, pos = memoryview(data), 0
    fields: list[Field] = []
    while pos < len(view):
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            end = _varint(view, pos)[1]
        elif wire == LENGTH:
            size, pos = _varint(view, pos)
            end = pos + size
        elif wire in (FIXED64, FIXED32):
            end = pos + (8 if wire == FIXED64 else 4)
        else:
            raise ValueError(f"field {number} has wire type {wire}, which ONNX does not use")
        if end > len(view):
            raise ValueError(f"field {number} runs past the end")
        fields.append((number, wire, view[pos:end]))
        pos = end
    return fields


def _join(fields: list[Field]) -> bytes:
    parts: list[bytes | memoryview] = []
    for number, wire, payload in fields:
        parts.append(_encode_varint(number << 3 | wire))
        if wire == LENGTH:
            parts.append(_encode_varint(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def _first(fields: list[Field], number: int) -> bytes | memoryview | None:
    return next((payload for n, wire, payload in fields if n == number and wire == LENGTH), None)


def _edit(fields: list[Field], number: int, change: Callable[[list[Field]], list[Field]]) -> list[Field]:
    """`fields` with the first LENGTH field `number` replaced by `change(its fields)` (joined again)."""
    out, done = [], False
    for n, wire, payload in fields:
        if n == number and wire == LENGTH and not done:
            payload, done = _join(change(_fields(payload))), True
        out.append((n, wire, payload))
    if not done:
        raise ValueError(f"no field {number} where one is needed")
    return out


def _dims(value_info: list[Field]) -> list[list[Field]]:
    tensor = _fields(_first(_fields(_first(value_info, VALUE_INFO_TYPE) or b""), TYPE_TENSOR) or b"")
    return [_fields(p) for n, _, p in _fields(_first(tensor, TENSOR_TYPE_SHAPE) or b"") if n == SHAPE_DIM]


def _with_dims(value_info: list[Field], free: dict[int, str]) -> list[Field]:
    """A ValueInfoProto's fields with the dimensions at the indexes of `free` named instead of sized."""
    def shape(fields: list[Field]) -> list[Field]:
        out, index = [], 0
        for n, wire, payload in fields:
            if n == SHAPE_DIM:
                if index in free:
                    payload = _join([(DIM_PARAM, LENGTH, free[index].encode())])
                index += 1
            out.append((n, wire, payload))
        return out

    return _edit(value_info, VALUE_INFO_TYPE,
                 lambda t: _edit(t, TYPE_TENSOR, lambda tensor: _edit(tensor, TENSOR_TYPE_SHAPE, shape)))


def _dim_value(dim: list[Field]) -> int | None:
    raw = next((p for n, wire, p in dim if n == DIM_VALUE and wire == VARINT), None)
    return None if raw is None else _varint(raw, 0)[0]


def free_size_graph(weights: Path) -> tuple[bytes, tuple[int, int]]:
    """The graph at `weights` with its input's height and width free (and the output's anchor axis), and the
    export's own input size (H, W)."""
    try:
        data = weights.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {weights}: {reason(exc)}") from exc
    try:
        model = _fields(data)
        graph = _fields(_first(model, MODEL_GRAPH) or b"")
        initializers = {bytes(_first(_fields(p), TENSOR_NAME) or b"") for n, _, p in graph if n == GRAPH_INITIALIZER}
        inputs = [(i, _fields(p)) for i, (n, _, p) in enumerate(graph) if n == GRAPH_INPUT]
        position, image = next((i, info) for i, info in inputs
                               if bytes(_first(info, VALUE_INFO_NAME) or b"") not in initializers)
        dims = _dims(image)
        sizes = [_dim_value(d) for d in dims]
        if len(sizes) != 4 or sizes[2] is None or sizes[3] is None:
            found = [s if s is not None else "?" for s in sizes]
            raise ModelError(f"{weights}: expected a YOLOX input [1,3,H,W] with fixed H and W, found {found}")
        input_hw = (sizes[2], sizes[3])
        edited: list[Field] = []
        for i, (n, wire, payload) in enumerate(graph):
            if n == GRAPH_VALUE_INFO:
                continue  # inferred for the square input
            if i == position:
                payload = _join(_with_dims(image, {2: "height", 3: "width"}))
            elif n == GRAPH_OUTPUT and len(_dims(output := _fields(payload))) == 3:
                payload = _join(_with_dims(output, {1: "anchors"}))
            edited.append((n, wire, payload))
        return _join([(n, wire, _join(edited) if n == MODEL_GRAPH else p) for n, wire, p in model]), input_hw
    except (ValueError, StopIteration) as exc:
        raise ModelError(f"{weights} is not an ONNX graph with an image input: {exc or 'no input'}") from exc
