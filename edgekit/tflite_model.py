"""Read a .tflite flatbuffer into plain Python objects, without TensorFlow.

Every stage that looks at an int8 model (analyze, both code generators, profile) reads it through `load_tflite`,
so there is one place that knows the flatbuffer schema. The schema bindings come from the tflite-micro package.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
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

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        if self.dtype in ("string", "resource", "variant"):
            return 0
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
        return [op for op in self.operators if tensor_index in op.inputs]

    def producer(self, tensor_index: int) -> Operator | None:
        for op in self.operators:
            if tensor_index in op.outputs:
                return op
        return None

    @property
    def is_fully_int8(self) -> bool:
        """int8 input and output, and no float tensor anywhere (biases may be int32)."""
        ends = self.input_tensors() + self.output_tensors()
        return all(t.dtype == "int8" for t in ends) and not any(t.dtype.startswith("float") for t in self.tensors)


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper() and out:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _options(op_t) -> dict:
    raw = op_t.builtinOptions
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


def _tensor(index: int, t, buffers) -> Tensor:
    dtype = _TENSOR_TYPES.get(t.type, f"type{t.type}")
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    q = t.quantization
    scale = np.asarray(q.scale if q is not None and q.scale is not None else [], dtype=np.float32)
    zero_point = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], dtype=np.int64)
    if zero_point.size < scale.size:  # some converters omit zero points for symmetric weights
        zero_point = np.zeros(scale.size, dtype=np.int64)
    data = None
    buffer = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
    if buffer is not None and buffer.data is not None and len(buffer.data) > 0 and dtype in _NUMPY_READABLE:
        raw = np.asarray(buffer.data, dtype=np.uint8).tobytes()
        data = np.frombuffer(raw, dtype=dtype).reshape(shape) if shape else np.frombuffer(raw, dtype=dtype)
    name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or f"tensor_{index}")
    return Tensor(
        index=index, name=name, shape=shape, dtype=dtype, scale=scale, zero_point=zero_point,
        quantized_dimension=int(q.quantizedDimension) if q is not None else 0, data=data,
        is_variable=bool(t.isVariable),
    )


_NUMPY_READABLE = {"float32", "float16", "int32", "uint8", "int64", "int16", "int8", "float64", "bool", "uint32",
                   "uint16", "uint64"}


def parse_tflite(model_bytes: bytes, name: str = "model") -> Graph:
    """Parse flatbuffer bytes. Raises EdgekitError (one line) for anything that is not a readable TFLite model."""
    model_bytes = bytes(model_bytes)
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise EdgekitError(f"{name} is not a TFLite flatbuffer (no 'TFL3' identifier); expected a .tflite file")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))
        subgraph = model.subgraphs[0]
        buffers = model.buffers or []
        tensors = [_tensor(i, t, buffers) for i, t in enumerate(subgraph.tensors or [])]
        builtin = _builtin_names()
        operators = []
        for i, op_t in enumerate(subgraph.operators or []):
            code = model.operatorCodes[op_t.opcodeIndex]
            builtin_code = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            opcode = builtin.get(builtin_code, f"BUILTIN_{builtin_code}")
            custom = code.customCode.decode("utf-8", "replace") if code.customCode else None
            operators.append(Operator(
                index=i, opcode=opcode,
                inputs=[int(x) for x in (op_t.inputs if op_t.inputs is not None else [])],
                outputs=[int(x) for x in (op_t.outputs if op_t.outputs is not None else [])],
                options=_options(op_t), custom_code=custom, version=int(code.version),
            ))
        inputs = [int(x) for x in subgraph.inputs]
        outputs = [int(x) for x in subgraph.outputs]
        for op in operators:
            for t in op.inputs + op.outputs:
                if t >= len(tensors) or t < -1:  # -1 is an omitted optional input; other negatives would wrap
                    raise IndexError(t)
    except EdgekitError:
        raise
    except Exception as error:  # the flatbuffer library raises anything from struct.error to IndexError
        raise EdgekitError(
            f"{name} is truncated or corrupted ({type(error).__name__} while reading it); expected a complete .tflite file"
        ) from None
    return Graph(name=name, tensors=tensors, operators=operators, inputs=inputs, outputs=outputs,
                 model_bytes=model_bytes, num_subgraphs=len(model.subgraphs))


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
