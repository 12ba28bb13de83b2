"""Read a .tflite flatbuffer into plain Python objects, without TensorFlow.

Every stage that looks at an int8 model (analyze, both code generators, profile) reads it through `load_tflite`,
so there is one place that knows the flatbuffer schema. The schema bindings come from the tflite-micro package.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

# TFLite TensorType enum -> numpy dtype name
_TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
    8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 13: "resource", 14: "variant",
    15: "uint32", 16: "uint16", 17: "int4",
}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDINGS = {0: "SAME", 1: "VALID"}


@cache
def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


@cache
def _builtin_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {value: name for name, value in vars(ops).items() if name.isupper() and isinstance(value, int)}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "int8", "int32", "float32", ...
    scale: np.ndarray  # float32, empty when not quantized; one entry per channel for per-channel weights
    zero_point: np.ndarray  # int64, same length as scale
    quantized_dimension: int
    data: np.ndarray | None  # constant data (weights, biases, shapes), None for activations
    is_variable: bool = False
    buffer: int = 0  # index into the model's buffers (0: the empty sentinel)
    buffer_bytes: int = 0  # length of that buffer's data (0 for activations); checked against shape x dtype

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    @property
    def nbytes(self) -> int:
        if self.dtype in ("string", "resource", "variant") or self.dtype.startswith("type"):
            return 0  # no fixed size (or an unknown type, which validate_graph refuses)
        if self.dtype == "int4":
            return (self.size + 1) // 2
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_quantized(self) -> bool:
        return self.scale.size > 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Operator:
    index: int
    opcode: str  # builtin operator name, e.g. "CONV_2D"; "CUSTOM" for custom ops
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)  # builtin options, snake_case keys, enums as names
    custom_code: str | None = None
    version: int = 1
    opcode_index: int = 0  # into the model's operator codes
    intermediates: list[int] = field(default_factory=list)  # calibration-only tensors (the fused LSTM's gates)

    @property
    def display_name(self) -> str:
        return self.custom_code if self.opcode == "CUSTOM" and self.custom_code else self.opcode


@dataclass
class Graph:
    """The main subgraph of a .tflite model."""

    name: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    model_bytes: bytes = field(repr=False)
    num_subgraphs: int = 1
    schema_version: int = 3
    num_buffers: int = 0
    num_opcodes: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()

    @property
    def opcodes(self) -> list[str]:
        """The distinct operators used, sorted (custom ops by their custom name)."""
        return sorted({op.display_name for op in self.operators})

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    def consumers(self, tensor_index: int) -> list[Operator]:
        return list(self._consumers.get(tensor_index, ()))

    def producer(self, tensor_index: int) -> Operator | None:
        return self._producers.get(tensor_index)

    @cached_property
    def _consumers(self) -> dict[int, list[Operator]]:
        """Tensor -> operators reading it, indexed once (a scan per question made long graphs quadratic)."""
        index: dict[int, list[Operator]] = {}
        for op in self.operators:
            for t in dict.fromkeys(op.inputs):
                index.setdefault(t, []).append(op)
        return index

    @cached_property
    def _producers(self) -> dict[int, Operator]:
        """Tensor -> the first operator writing it."""
        index: dict[int, Operator] = {}
        for op in self.operators:
            for t in op.outputs:
                index.setdefault(t, op)
        return index

    @cached_property
    def intermediate_tensors(self) -> set[int]:
        """Tensors that are only operator intermediates: the converter's record of a fused LSTM's gate scales,
        empty (shape [0]) and never read or written at run time (TFLite Micro ignores them)."""
        used = {t for op in self.operators for t in op.inputs + op.outputs} | set(self.inputs) | set(self.outputs)
        return {t for op in self.operators for t in op.intermediates if t not in used}

    @property
    def is_fully_int8(self) -> bool:
        """int8 input and output, and no float tensor anywhere (biases may be int32, an LSTM's cell state int16).

        Intermediates do not count: they hold no data."""
        ends = self.input_tensors() + self.output_tensors()
        skip = self.intermediate_tensors
        return all(t.dtype == "int8" for t in ends) and not any(
            t.dtype.startswith("float") for t in self.tensors if t.index not in skip)


@cache
def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper() and out:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _options(raw) -> dict:
    """Builtin options (an object-API options object, or None) as a dict with snake_case keys."""
    if raw is None:
        return {}
    options = {}
    for key, value in vars(raw).items():
        key = _snake(key)
        if key == "fused_activation_function":
            value = _ACTIVATIONS.get(value, str(value))
        elif key == "padding":
            value = _PADDINGS.get(value, str(value))
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        options[key] = value
    return options


def _vector(table, name: str) -> np.ndarray:
    """A scalar vector field of a flatbuffer table as numpy (empty when absent), without the object API's copies."""
    if getattr(table, f"{name}IsNone")():
        return np.zeros(0, dtype=np.int32)
    return getattr(table, f"{name}AsNumpy")()


def _tensor(index: int, t, buffers: list[bytes]) -> Tensor:
    """One tensor from the accessor API (reading only what edgekit uses keeps long graphs fast)."""
    type_code, buffer = int(t.Type()), int(t.Buffer())
    dtype = _TENSOR_TYPES.get(type_code, f"type{type_code}")
    shape = tuple(int(d) for d in _vector(t, "Shape"))
    q = t.Quantization()
    scale = np.asarray(_vector(q, "Scale") if q is not None else [], dtype=np.float32).reshape(-1)
    zero_point = np.asarray(_vector(q, "ZeroPoint") if q is not None else [], dtype=np.int64).reshape(-1)
    raw = buffers[buffer] if 0 < buffer < len(buffers) else b""
    tensor = Tensor(
        index=index, name=_text(t.Name()) or f"tensor_{index}", shape=shape, dtype=dtype, scale=scale,
        zero_point=zero_point, quantized_dimension=int(q.QuantizedDimension()) if q is not None else 0, data=None,
        is_variable=bool(t.IsVariable()), buffer=buffer, buffer_bytes=len(raw),
    )
    # Data whose size does not match shape x dtype stays unread: validate_graph names the tensor.
    if raw and dtype in _NUMPY_READABLE and all(d >= 0 for d in shape) and len(raw) == tensor.nbytes:
        data = np.frombuffer(raw, dtype=dtype)
        tensor.data = data.reshape(shape) if shape else data
    return tensor


def _buffer_data(buffer, model_bytes: bytes) -> bytes:
    """A buffer's bytes: inside the flatbuffer, or after it (offset/size, for models over 2 GB)."""
    if buffer is None:
        return b""
    if not buffer.DataIsNone() and buffer.DataLength() > 0:
        return buffer.DataAsNumpy().tobytes()
    offset, size = int(buffer.Offset()), int(buffer.Size())
    if offset > 1:
        if offset + size > len(model_bytes):
            raise EdgekitError(f"a buffer's data lies outside the file (offset {offset}, size {size})")
        return model_bytes[offset:offset + size]
    return b""


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


_NUMPY_READABLE = {"float32", "float16", "int32", "uint8", "int64", "int16", "int8", "float64", "bool", "uint32",
                   "uint16", "uint64"}

# Sizes past which a model is refused before its tables are read: far above any microcontroller model (an LSTM
# unrolled over hundreds of steps has a few thousand operators), low enough to keep analysis to seconds.
MAX_OPERATORS = 100_000
MAX_TENSORS = 200_000


def parse_tflite(model_bytes: bytes, name: str = "model") -> Graph:
    """Parse and validate flatbuffer bytes (edgekit.graph_check). Raises EdgekitError (one line), and nothing else,
    for anything that is not a valid TFLite model, whatever the bytes."""
    from edgekit.graph_check import validate_graph

    graph = _read_graph(bytes(model_bytes), name)
    validate_graph(graph)
    return graph


def _read_graph(model_bytes: bytes, name: str) -> Graph:
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise EdgekitError(f"{name} is not a TFLite flatbuffer (no 'TFL3' identifier); expected a .tflite file")
    schema = _schema()
    try:
        root = schema.Model.GetRootAsModel(model_bytes, 0)
        num_subgraphs = root.SubgraphsLength()
        if num_subgraphs == 0:
            raise EdgekitError(f"{name} is truncated or corrupted (it has no subgraph); expected a complete "
                               f".tflite file")
        main = root.Subgraphs(0)
        counts = (("subgraphs", num_subgraphs, None), ("operators", main.OperatorsLength(), MAX_OPERATORS),
                  ("tensors", main.TensorsLength(), MAX_TENSORS), ("buffers", root.BuffersLength(), None),
                  ("operator codes", root.OperatorCodesLength(), None))
        for what, count, cap in counts:
            if 4 * count > len(model_bytes):  # each entry is a 4-byte offset: the file cannot hold them
                raise EdgekitError(f"{name} is truncated or corrupted (it claims {count:,} {what} in "
                                   f"{len(model_bytes):,} bytes); expected a complete .tflite file")
            if cap is not None and count > cap:
                raise EdgekitError(f"{name} has {count:,} {what}; edgekit handles at most {cap:,}")
        buffers = [_buffer_data(root.Buffers(i), model_bytes) for i in range(root.BuffersLength())]
        codes = [schema.OperatorCodeT.InitFromObj(root.OperatorCodes(i)) for i in range(root.OperatorCodesLength())]
        tensors = [_tensor(i, main.Tensors(i), buffers) for i in range(main.TensorsLength())]
        builtin = _builtin_names()
        operators = []
        for i in range(main.OperatorsLength()):
            op_t = main.Operators(i)
            index = int(op_t.OpcodeIndex())
            opcode, custom, version = "UNKNOWN", None, 1
            if 0 <= index < len(codes):
                code = codes[index]
                builtin_code = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
                opcode = builtin.get(builtin_code, f"BUILTIN_{builtin_code}")
                custom = _text(code.customCode) or None
                version = int(code.version)
            operators.append(Operator(
                index=i, opcode=opcode,
                inputs=_vector(op_t, "Inputs").tolist(), outputs=_vector(op_t, "Outputs").tolist(),
                options=_options(schema.BuiltinOptionsCreator(op_t.BuiltinOptionsType(), op_t.BuiltinOptions())),
                custom_code=custom, version=version, opcode_index=index,
                intermediates=_vector(op_t, "Intermediates").tolist(),
            ))
        inputs = _vector(main, "Inputs").tolist()
        outputs = _vector(main, "Outputs").tolist()
        schema_version = int(root.Version())
    except EdgekitError as error:
        if str(error).startswith(name):
            raise
        raise EdgekitError(f"{name}: {error}") from None
    except Exception as error:  # the flatbuffer library raises anything from struct.error to IndexError
        raise EdgekitError(
            f"{name} is truncated or corrupted ({type(error).__name__} while reading it); expected a complete .tflite file"
        ) from None
    return Graph(name=name, tensors=tensors, operators=operators, inputs=inputs, outputs=outputs,
                 model_bytes=model_bytes, num_subgraphs=num_subgraphs, schema_version=schema_version,
                 num_buffers=len(buffers), num_opcodes=len(codes))


def load_tflite(path) -> Graph:
    """Read and parse a .tflite file; the graph's name is the file's stem."""
    from edgekit.fileio import MAX_MODEL_BYTES, read_input_file

    path = Path(path)
    return parse_tflite(read_input_file(path, "model file", MAX_MODEL_BYTES), name=path.stem)


def require_int8(graph: Graph) -> None:
    """Stop with a clear message when a model does not have int8 input and output."""
    bad = [t for t in graph.input_tensors() + graph.output_tensors() if t.dtype != "int8"]
    if bad:
        t = bad[0]
        which = "input" if t.index in graph.inputs else "output"
        raise EdgekitError(
            f"{graph.name} has a {t.dtype} {which} '{t.name}'; expected a fully int8 model "
            f"(run `edgekit quantize` on it, or on the float model, first)"
        )
