"""One validation pass over a parsed .tflite graph, before any stage looks at it.

It checks what TFLite Micro and LiteRT check when they load and prepare a model (schema version, index ranges,
quantization parameters, operator options) plus what edgekit's own stages rely on (one producer per tensor,
operators in execution order, view ops that keep the element count, convolution shapes that follow from their
options). `parse_tflite` runs it on every model, so analyze, build, quantize, profile and both code generators
only ever see graphs that pass; a failure is one line naming the operator, the tensor and the rule broken.
The rules and their messages are listed in docs/robustness.md ("Graph validation"). Every check is linear in the
size of the graph.
"""

from __future__ import annotations

import math

from edgekit.errors import EdgekitError
from edgekit.tflite_model import Graph, Operator, Tensor

SCHEMA_VERSION = 3
MAX_RANK = 8  # TFLite kernels handle up to 6 dimensions; more is a corrupted shape
MAX_TENSOR_BYTES = 1 << 31  # no microcontroller addresses more; also keeps C offsets in 32 bits
MAX_DILATION = 1 << 16
MAX_SCALE = 1e20  # an int8 step of 1e20: only absurd data gives it, and TFLite Micro aborts on its multipliers

CONTROL_FLOW_OPS = ("WHILE", "IF", "CALL_ONCE", "CALL")
_QUANTIZED_ACTIVATION_TYPES = ("int8", "int16")
_VIEW_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
_WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D")

# Builtin options each operator needs (their absence makes TFLite fall back to zeros: stride 0, beta 0...).
_POOL_OPTIONS = ("padding", "stride_w", "stride_h", "filter_width", "filter_height", "fused_activation_function")
REQUIRED_OPTIONS = {
    "CONV_2D": ("padding", "stride_w", "stride_h", "dilation_w_factor", "dilation_h_factor",
                "fused_activation_function"),
    "DEPTHWISE_CONV_2D": ("padding", "stride_w", "stride_h", "depth_multiplier", "dilation_w_factor",
                          "dilation_h_factor", "fused_activation_function"),
    "TRANSPOSE_CONV": ("padding", "stride_w", "stride_h"),
    "AVERAGE_POOL_2D": _POOL_OPTIONS, "MAX_POOL_2D": _POOL_OPTIONS, "L2_POOL_2D": _POOL_OPTIONS,
    "FULLY_CONNECTED": ("fused_activation_function", "keep_num_dims"),
    "SOFTMAX": ("beta",),
    "CONCATENATION": ("axis", "fused_activation_function"),
}

# Inputs an operator cannot do without (the first N; later ones may be -1, "omitted").
REQUIRED_INPUTS = {
    "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3, "AVERAGE_POOL_2D": 1,
    "MAX_POOL_2D": 1, "L2_POOL_2D": 1, "ADD": 2, "SUB": 2, "MUL": 2, "DIV": 2, "RESHAPE": 1, "SQUEEZE": 1,
    "EXPAND_DIMS": 2, "SOFTMAX": 1, "LOGISTIC": 1, "TANH": 1, "RELU": 1, "RELU6": 1, "QUANTIZE": 1,
    "DEQUANTIZE": 1, "PAD": 2, "PADV2": 2, "MEAN": 2, "CONCATENATION": 1, "BATCH_MATMUL": 2,
}
_PADDINGS = ("SAME", "VALID")
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")


class GraphError(EdgekitError):
    """A graph that breaks a validation rule; `rule` is the rule's name, as in docs/robustness.md."""

    def __init__(self, graph: Graph, rule: str, problem: str, expected: str, *, op: Operator | None = None,
                 tensor: Tensor | int | None = None):
        where = []
        if op is not None:
            where.append(f"operator {op.index} ({op.display_name})")
        if isinstance(tensor, Tensor):
            name = tensor.name if len(tensor.name) <= 48 else f"{tensor.name[:45]}..."  # converters join names
            where.append(f"tensor {tensor.index} '{name}'")
        elif tensor is not None:
            where.append(f"tensor {tensor}")
        place = f"{', '.join(where)}: " if where else ""
        super().__init__(f"{graph.name} is not a valid model ({rule}): {place}{problem}; expected {expected}")
        self.rule = rule


def validate_graph(graph: Graph) -> None:
    """Raise GraphError (an EdgekitError) on the first rule the graph breaks; return None for a valid graph."""
    _check_model(graph)
    skip = graph.intermediate_tensors
    for t in graph.tensors:
        if t.index in skip:
            _check_intermediate(graph, t)
        else:
            _check_tensor(graph, t)
    _check_graph_ends(graph)
    _check_dataflow(graph)
    for op in graph.operators:
        _check_operator(graph, op)


def _check_model(graph: Graph) -> None:
    if graph.schema_version != SCHEMA_VERSION:
        raise GraphError(graph, "schema version", f"the file says schema version {graph.schema_version}",
                         f"version {SCHEMA_VERSION}, the one TFLite Micro and LiteRT read")
    if graph.num_subgraphs > 1:
        flow = sorted({op.opcode for op in graph.operators if op.opcode in CONTROL_FLOW_OPS})
        raise EdgekitError(f"{graph.name} has {graph.num_subgraphs} subgraphs ({', '.join(flow) or 'control flow'}); "
                           f"no backend runs control flow yet (expected a model of one graph: convert recurrent "
                           f"layers unrolled, or with fused LSTM operators)")
    for op in graph.operators:
        if not 0 <= op.opcode_index < graph.num_opcodes:
            raise GraphError(graph, "opcode index", f"its operator code index is {op.opcode_index}",
                             f"an index below {graph.num_opcodes}, the number of operator codes", op=op)


def _check_intermediate(graph: Graph, t: Tensor) -> None:
    """An operator intermediate holds no data: an empty shape is its normal form, a buffer would be a lie."""
    if len(t.shape) > MAX_RANK or any(d < 0 for d in t.shape) or t.buffer_bytes:
        raise GraphError(graph, "intermediate", f"it is an operator intermediate of shape {list(t.shape)} with "
                         f"{t.buffer_bytes} bytes of data", "an empty tensor without data", tensor=t)


def _check_tensor(graph: Graph, t: Tensor) -> None:
    if t.dtype.startswith("type"):
        raise GraphError(graph, "tensor type", f"its type is {t.dtype[4:]}, which no TFLite schema defines",
                         "a TFLite TensorType (int8, int32, float32...)", tensor=t)
    if len(t.shape) > MAX_RANK:
        raise GraphError(graph, "dimensions", f"it has {len(t.shape)} dimensions", f"at most {MAX_RANK}", tensor=t)
    if any(d <= 0 for d in t.shape):
        raise GraphError(graph, "dimensions", f"its shape {list(t.shape)} has a dimension <= 0",
                         "dimensions of at least 1", tensor=t)
    if t.nbytes > MAX_TENSOR_BYTES:
        raise GraphError(graph, "tensor size", f"its shape {list(t.shape)} makes {t.nbytes:,} bytes",
                         f"at most {MAX_TENSOR_BYTES:,} bytes per tensor", tensor=t)
    if not 0 <= t.buffer < graph.num_buffers:
        raise GraphError(graph, "buffer index", f"its buffer index is {t.buffer}",
                         f"an index below {graph.num_buffers}, the number of buffers", tensor=t)
    if t.buffer_bytes and t.nbytes and t.buffer_bytes != t.nbytes:
        raise GraphError(graph, "constant size", f"its data has {t.buffer_bytes:,} bytes",
                         f"{t.nbytes:,} bytes for shape {list(t.shape)} of {t.dtype}", tensor=t)
    if t.scale.size == 0:
        return
    if t.zero_point.size != t.scale.size:
        raise GraphError(graph, "zero points", f"it has {t.scale.size} scales and {t.zero_point.size} zero points",
                         "one zero point per scale", tensor=t)
    bad = [float(s) for s in t.scale if not (math.isfinite(float(s)) and 0 < float(s) <= MAX_SCALE)]
    if bad:
        raise GraphError(graph, "scale", f"a quantization scale is {bad[0]}", f"finite scales > 0 and <= "
                         f"{MAX_SCALE:g}", tensor=t)
    rank = len(t.shape)
    if rank and not 0 <= t.quantized_dimension < rank:
        raise GraphError(graph, "quantized dimension", f"quantized_dimension is {t.quantized_dimension}",
                         f"a dimension of its shape {list(t.shape)} (0 to {rank - 1})", tensor=t)
    if t.scale.size > 1 and (not rank or t.shape[t.quantized_dimension] != t.scale.size):
        channels = t.shape[t.quantized_dimension] if rank else 1
        raise GraphError(graph, "per-channel scales",
                         f"it has {t.scale.size} scales and {channels} channels along dimension "
                         f"{t.quantized_dimension}", "one scale per channel, or a single scale", tensor=t)


def _check_graph_ends(graph: Graph) -> None:
    n = len(graph.tensors)
    for which, indices in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        if not indices:
            raise GraphError(graph, f"graph {which}", f"the graph lists no {which}", f"at least one {which[:-1]}")
        for i in indices:
            if not 0 <= i < n:
                raise GraphError(graph, f"graph {which}", f"it lists tensor {i} among its {which}",
                                 f"tensor indices below {n}")
    for i in graph.inputs:
        t = graph.tensors[i]
        if t.buffer_bytes:
            raise GraphError(graph, "constant graph input", "a graph input holds constant data",
                             "an input the application fills", tensor=t)
        if t.dtype in _QUANTIZED_ACTIVATION_TYPES and not t.scale.size:
            raise GraphError(graph, "unquantized activation", f"this {t.dtype} graph input has no quantization "
                             "parameters", "a scale and zero point on every int8/int16 activation", tensor=t)


def _check_dataflow(graph: Graph) -> None:
    """Indices in range, one producer per tensor, every input defined before it is read (no cycle)."""
    n = len(graph.tensors)
    graph_inputs = set(graph.inputs)
    producer: dict[int, Operator] = {}
    for op in graph.operators:
        for i in op.inputs:
            if not -1 <= i < n:
                raise GraphError(graph, "tensor index", f"it reads tensor {i}",
                                 f"tensor indices below {n} (or -1 for an omitted optional input)", op=op)
        if not op.outputs:
            raise GraphError(graph, "operator outputs", "it has no output", "at least one output tensor", op=op)
        for o in op.outputs:
            if not 0 <= o < n:
                raise GraphError(graph, "tensor index", f"it writes tensor {o}", f"tensor indices below {n}", op=op)
            t = graph.tensors[o]
            if o in graph_inputs:
                raise GraphError(graph, "output is a graph input", "it writes a graph input",
                                 "operators to write intermediate or output tensors", op=op, tensor=t)
            if t.buffer_bytes:
                raise GraphError(graph, "output is a constant", "it writes a constant (weight) tensor",
                                 "operators to write activation tensors", op=op, tensor=t)
            if o in producer:
                raise GraphError(graph, "two producers", f"operator {producer[o].index} "
                                 f"({producer[o].display_name}) writes this tensor too",
                                 "one operator writing each tensor", op=op, tensor=t)
            producer[o] = op
    for op in graph.operators:
        for i in op.inputs:
            if i < 0 or i in graph_inputs:
                continue
            t = graph.tensors[i]
            if t.buffer_bytes or t.is_variable:
                continue
            source = producer.get(i)
            if source is None:
                raise GraphError(graph, "undefined input", "it reads a tensor that is neither a graph input, a "
                                 "constant nor written by an operator", "every input to be defined", op=op, tensor=t)
            if source.index >= op.index:
                if _has_cycle(graph, producer):
                    raise GraphError(graph, "cycle", f"it reads the output of operator {source.index} "
                                     f"({source.display_name}), which depends on it", "an acyclic graph",
                                     op=op, tensor=t)
                raise GraphError(graph, "execution order", f"it reads the output of the later operator "
                                 f"{source.index} ({source.display_name})",
                                 "operators stored in execution order, as TFLite runs them", op=op, tensor=t)
    for o in graph.outputs:
        t = graph.tensors[o]
        if o not in producer and o not in graph_inputs and not t.buffer_bytes:
            raise GraphError(graph, "graph outputs", "no operator writes this graph output",
                             "every output to be computed", tensor=t)


def _has_cycle(graph: Graph, producer: dict[int, Operator]) -> bool:
    """Whether the operators cannot be ordered at all (Kahn's algorithm), as opposed to merely stored out of order."""
    users: dict[int, list[int]] = {}
    waiting = [0] * len(graph.operators)
    for op in graph.operators:
        for source in {producer[i].index for i in op.inputs if i in producer}:
            users.setdefault(source, []).append(op.index)
            waiting[op.index] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]
    done = 0
    while ready:
        done += 1
        for user in users.get(ready.pop(), ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return done < len(graph.operators)


def _check_operator(graph: Graph, op: Operator) -> None:
    t = graph.tensors
    needed = REQUIRED_INPUTS.get(op.opcode, 0)
    if len(op.inputs) < needed or any(i < 0 for i in op.inputs[:needed]):
        raise GraphError(graph, "operator inputs", f"it has inputs {op.inputs}",
                         f"{needed} input tensors (none omitted)", op=op)
    for o in op.outputs:
        if t[o].dtype in _QUANTIZED_ACTIVATION_TYPES and not t[o].scale.size:
            raise GraphError(graph, "unquantized activation", f"this {t[o].dtype} output has no quantization "
                             "parameters", "a scale and zero point on every int8/int16 activation", op=op,
                             tensor=t[o])
    required = REQUIRED_OPTIONS.get(op.opcode)
    if required and any(key not in op.options for key in required):
        raise GraphError(graph, "options", "its builtin options are missing or of another operator's kind",
                         f"{op.opcode} options ({', '.join(required)})", op=op)
    padding = op.options.get("padding")
    if padding is not None and padding not in _PADDINGS:
        raise GraphError(graph, "padding", f"its padding is {padding}", "SAME (0) or VALID (1)", op=op)
    activation = op.options.get("fused_activation_function")
    if activation is not None and activation not in _ACTIVATIONS:
        raise GraphError(graph, "activation", f"its fused activation is {activation}",
                         f"one of {', '.join(_ACTIVATIONS)}", op=op)
    for key in ("stride_w", "stride_h"):
        if key in op.options and int(op.options[key]) < 1:
            raise GraphError(graph, "stride", f"{key} is {op.options[key]}", "strides of at least 1", op=op)
    for key in ("dilation_w_factor", "dilation_h_factor"):
        if key in op.options and not 1 <= int(op.options[key]) <= MAX_DILATION:
            raise GraphError(graph, "dilation", f"{key} is {op.options[key]}",
                             f"a dilation from 1 to {MAX_DILATION}", op=op)
    for key in ("filter_width", "filter_height"):
        if key in op.options and int(op.options[key]) < 1:
            raise GraphError(graph, "filter size", f"{key} is {op.options[key]}", "a window of at least 1", op=op)
    if op.opcode in _VIEW_OPS:
        source, out = t[op.inputs[0]], t[op.outputs[0]]
        if source.size != out.size or source.dtype != out.dtype:
            raise GraphError(graph, "reshape size", f"it turns {list(source.shape)} {source.dtype} into "
                             f"{list(out.shape)} {out.dtype}", "the same number of elements and type", op=op,
                             tensor=out)
    if op.opcode in _WINDOW_OPS:
        _check_window(graph, op)


def _check_window(graph: Graph, op: Operator) -> None:
    """Convolution and pooling: NHWC tensors whose output height and width follow from the options, as in TFLite."""
    t = graph.tensors
    source, out = t[op.inputs[0]], t[op.outputs[0]]
    conv = op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")
    weights = t[op.inputs[1]] if conv else None
    for tensor in (source, out) + ((weights,) if weights is not None else ()):
        if len(tensor.shape) != 4:
            raise GraphError(graph, "window shape", f"shape {list(tensor.shape)}", "4 dimensions (NHWC)", op=op,
                             tensor=tensor)
    if conv:
        k_h, k_w = weights.shape[1], weights.shape[2]
    else:
        k_h, k_w = int(op.options["filter_height"]), int(op.options["filter_width"])
    o = op.options
    expected = [source.shape[0]]
    for size, k, stride, dilation in ((source.shape[1], k_h, o["stride_h"], o.get("dilation_h_factor", 1)),
                                      (source.shape[2], k_w, o["stride_w"], o.get("dilation_w_factor", 1))):
        extent = (k - 1) * int(dilation) + 1
        stride = int(stride)
        expected.append((size + stride - 1) // stride if o["padding"] == "SAME" else (size - extent + stride) // stride)
    if expected[1] < 1 or expected[2] < 1:
        raise GraphError(graph, "window shape", f"a {k_h}x{k_w} window (dilated) does not fit the "
                         f"{source.shape[1]}x{source.shape[2]} input", "a window no larger than its VALID input",
                         op=op, tensor=source)
    if list(out.shape[:3]) != expected:
        raise GraphError(graph, "window shape", f"its output is {list(out.shape)}",
                         f"{expected + [out.shape[3]]} from the input {list(source.shape)}, window, strides and "
                         f"padding", op=op, tensor=out)
    channels = {"CONV_2D": weights.shape[0] if conv else None, "DEPTHWISE_CONV_2D": weights.shape[3] if conv else None}
    expected_c = channels.get(op.opcode, source.shape[3])
    if out.shape[3] != expected_c or (op.opcode == "CONV_2D" and source.shape[3] % weights.shape[3]):
        raise GraphError(graph, "window shape", f"input {list(source.shape)}, output {list(out.shape)}"
                         + (f", filter {list(weights.shape)}" if conv else ""),
                         "output channels matching the filter (input channels a multiple of its depth)", op=op,
                         tensor=out)
    if conv and len(op.inputs) > 2 and op.inputs[2] >= 0 and t[op.inputs[2]].size != expected_c:
        bias = t[op.inputs[2]]
        raise GraphError(graph, "bias size", f"the bias has {bias.size} values", f"{expected_c}, one per output "
                         "channel", op=op, tensor=bias)
