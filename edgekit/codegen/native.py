"""The native backend: an int8 .tflite model compiled to interpreter-free C99, bit-exact with TFLite Micro.

`generate_native_model(graph, out_dir)` writes model.c / model.h (the graph unrolled into kernel calls, weights as
const arrays, requantization multipliers and shifts computed here, one static arena laid out by an in-place-aware
memory plan) and the kernel library ek_kernels.c / ek_kernels.h, plus the two contract headers of templates/app.
The generated model implements templates/app/edgekit_backend.h.

Every integer parameter is computed the way TFLite Micro's kernels compute it in their Prepare step (same double
or float arithmetic, same rounding), so the C code needs no floating point except for float model inputs/outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partialmethod
from pathlib import Path

import numpy as np

from edgekit.codegen.common import atomic_write_bytes, c_comment, c_float, c_identifier, c_ints, c_string, render
from edgekit.codegen.native_ops import EXTRA_OPS, FLOAT_OPS, ExtraLowering, extra_reasons, kernel_files
from edgekit.errors import EdgekitError
from edgekit.memory_plan import VIEW_OPS, MemoryPlan, plan_activations
from edgekit.resources import templates_dir
from edgekit.tflite_model import Graph, Operator

SUPPORTED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL", "RESHAPE",
    "SQUEEZE", "EXPAND_DIMS", "SOFTMAX", "LOGISTIC", "TANH", "QUANTIZE", "DEQUANTIZE", "PAD", "PADV2", "MEAN",
    "CONCATENATION",
}) | EXTRA_OPS
# the kernels of ek_kernels.c that index 4-D tensors (the others take any rank up to native_ops.MAX_DIMS)
_RANK4_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL", "PAD",
                        "PADV2", "FULLY_CONNECTED"})
_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
_TYPE_ENUM = {"int8": "EK_TYPE_INT8", "uint8": "EK_TYPE_UINT8", "int16": "EK_TYPE_INT16", "int32": "EK_TYPE_INT32",
              "float32": "EK_TYPE_FLOAT32"}
KERNEL_FILES = ("ek_kernels.c", "ek_kernels.h")
CONTRACT_FILES = ("edgekit_backend.h", "edgekit_platform.h")


@dataclass
class NativeModel:
    files: list[Path]
    arena_bytes: int
    layers: list[str]
    unsupported: list[str] = field(default_factory=list)  # empty: generation stops on anything unsupported
    weight_bytes: int = 0  # constant data in flash (weights, biases, multipliers, shifts)
    input_preserved: bool = False  # the input buffer survives ek_model_invoke (else it is reused, as in TFLM)
    plan: MemoryPlan | None = field(default=None, repr=False)
    layer_operators: list[int] = field(default_factory=list)  # the graph operator of each layer (views run none)
    canonical: list[str] = field(default_factory=list)  # what edgekit.codegen.canonical folded before codegen


# ----------------------------------------------------------------------------------------------------------------
# TFLite's quantization arithmetic, done here once instead of on the device.

def _round_half_away(x: float) -> int:
    """std::round on a double: halves go away from zero."""
    f = math.floor(abs(x))
    r = f + 1 if abs(x) - f >= 0.5 else f
    return int(r if x >= 0 else -r)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = mult * 2^(shift - 31), mult a Q0.31 in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def _f32(x) -> np.float32:
    return np.float32(x)


def _quantize_value(value: float, scale: float, zero_point: int) -> int:
    """TFLite's Quantize in CalculateActivationRangeQuantized: float division, round half away."""
    return int(zero_point) + _round_half_away(float(_f32(value) / _f32(scale)))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    lo, hi = -128, 127
    if activation == "RELU":
        lo = max(lo, _quantize_value(0.0, scale, zero_point))
    elif activation == "RELU6":
        lo = max(lo, _quantize_value(0.0, scale, zero_point))
        hi = min(hi, _quantize_value(6.0, scale, zero_point))
    elif activation == "RELU_N1_TO_1":
        lo = max(lo, _quantize_value(-1.0, scale, zero_point))
        hi = min(hi, _quantize_value(1.0, scale, zero_point))
    return lo, hi


def _shape4(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in shape)
    return (1,) * (4 - len(shape)) + shape


def _same_padding(in_size: int, out_size: int, kernel: int, stride: int, dilation: int) -> int:
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def padding_for(op: Operator, graph: Graph) -> tuple[int, int]:
    """(top, left) padding of a convolution or pool, as TFLite computes it from the padding mode."""
    _, in_h, in_w, _ = _shape4(graph.tensors[op.inputs[0]].shape)
    _, out_h, out_w, _ = _shape4(graph.tensors[op.outputs[0]].shape)
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        shape = graph.tensors[op.inputs[1]].shape
        k_h, k_w = int(shape[1]), int(shape[2])
    else:
        k_h, k_w = int(op.options.get("filter_height", 1)), int(op.options.get("filter_width", 1))
    if op.options.get("padding", "VALID") != "SAME":
        return 0, 0
    return (_same_padding(in_h, out_h, k_h, int(op.options.get("stride_h", 1)), int(op.options.get("dilation_h_factor", 1))),
            _same_padding(in_w, out_w, k_w, int(op.options.get("stride_w", 1)), int(op.options.get("dilation_w_factor", 1))))


def mean_layout(op: Operator, graph: Graph) -> tuple[int, int, int] | None:
    """(outer, reduce, inner) when MEAN reduces a contiguous run of axes, else None."""
    shape = tuple(int(d) for d in graph.tensors[op.inputs[0]].shape)
    axis_t = graph.tensors[op.inputs[1]]
    if axis_t.data is None or not shape:
        return None
    axes = sorted({int(a) % len(shape) for a in np.asarray(axis_t.data).reshape(-1)})
    if not axes or axes != list(range(axes[0], axes[-1] + 1)):
        return None
    return (int(np.prod(shape[:axes[0]], dtype=np.int64)), int(np.prod(shape[axes[0]:axes[-1] + 1], dtype=np.int64)),
            int(np.prod(shape[axes[-1] + 1:], dtype=np.int64)))


def pad_layout(op: Operator, graph: Graph) -> tuple[list[int], list[int], list[int]]:
    """Input dims, output dims and padding before each dim, all extended to 4 dimensions."""
    in_shape = list(_shape4(graph.tensors[op.inputs[0]].shape))
    out_shape = list(_shape4(graph.tensors[op.outputs[0]].shape))
    pads = np.asarray(graph.tensors[op.inputs[1]].data).reshape(-1, 2)
    before = [0] * (4 - len(pads)) + [int(b) for b in pads[:, 0]]
    return in_shape, out_shape, before


# ----------------------------------------------------------------------------------------------------------------
# What the backend supports.

def unsupported_reasons(graph: Graph) -> list[str]:
    """Everything in the graph that the native backend cannot compile, one short phrase each (after
    edgekit.codegen.canonical has folded what is constant at batch 1)."""
    from edgekit.codegen.canonical import canonicalize

    graph = canonicalize(graph).graph
    reasons: list[str] = []

    def add(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    if graph.num_subgraphs > 1:
        add(f"{graph.num_subgraphs} subgraphs (control flow)")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        add(f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs (one of each is supported)")
    t = graph.tensors
    for op in graph.operators:
        name = op.display_name
        if op.opcode not in SUPPORTED_OPS:
            add(name)
            continue
        acts = [i for i in op.inputs if i >= 0 and not t[i].is_constant] + list(op.outputs)
        if op.opcode == "QUANTIZE":
            bad = t[op.inputs[0]].dtype not in ("float32", "int8") or t[op.outputs[0]].dtype != "int8"
        elif op.opcode == "DEQUANTIZE":
            bad = t[op.inputs[0]].dtype != "int8" or t[op.outputs[0]].dtype != "float32"
        elif op.opcode in FLOAT_OPS:
            bad = any(t[i].dtype != "float32" for i in acts)
        else:
            bad = any(t[i].dtype != "int8" for i in acts)
        if bad:
            types = sorted({t[i].dtype for i in acts} - {"int8"})
            add(f"{name} with {'/'.join(types) or 'non-int8'} tensors")
            continue
        if op.opcode in _RANK4_OPS and any(len(t[i].shape) > 4 for i in acts):
            add(f"{name} on tensors of more than 4 dimensions")
        if op.opcode in EXTRA_OPS:
            for reason in extra_reasons(op, graph):
                add(reason)
        if op.options.get("fused_activation_function", "NONE") not in _ACTIVATIONS:
            add(f"{name} with a fused {op.options['fused_activation_function']} activation")
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = t[op.inputs[1]]
            if w.dtype != "int8" or w.data is None:
                add(f"{name} with {w.dtype} weights")
            elif op.opcode == "FULLY_CONNECTED" and np.any(w.zero_point != 0):
                add(f"{name} with asymmetric weights")
            if len(op.inputs) > 2 and op.inputs[2] >= 0 and t[op.inputs[2]].dtype != "int32":
                add(f"{name} with {t[op.inputs[2]].dtype} bias")
            if op.opcode == "CONV_2D" and int(w.shape[3]) != _shape4(t[op.inputs[0]].shape)[3]:
                add(f"{name} with groups")
            if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D") and _shape4(t[op.inputs[0]].shape)[0] != 1:
                add(f"{name} with a batch larger than 1")
        if op.opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and _shape4(t[op.inputs[0]].shape)[0] != 1:
            add(f"{name} with a batch larger than 1")
        if op.opcode == "MEAN":
            for reason in extra_reasons(op, graph):
                add(reason)
        if op.opcode in ("PAD", "PADV2") and t[op.inputs[1]].data is None:
            add(f"{name} with computed paddings")
        if op.opcode in ("ADD", "MUL"):
            a, b = (_shape4(t[i].shape) for i in op.inputs[:2])
            if any(x != y and x != 1 and y != 1 for x, y in zip(a, b)):
                add(f"{name} with incompatible shapes")
    return reasons


def check_native_support(graph: Graph) -> None:
    """Stop with one line naming everything unsupported, and what to use instead."""
    reasons = unsupported_reasons(graph)
    if reasons:
        raise EdgekitError(
            f"{graph.name}: the native backend does not support {'; '.join(reasons)}; "
            f"use --backend tflm for this model"
        )


# ----------------------------------------------------------------------------------------------------------------
# Lowering: each operator becomes const arrays, a const parameter struct and kernel calls.

@dataclass
class _Layer:
    index: int
    name: str  # the operator's name, as ek_model_layer_name returns it
    comment: str
    operator: int = -1  # the graph operator this layer runs
    output: int = -1  # its output tensor (in the arena unless it is the graph's constant)
    arrays: list[dict] = field(default_factory=list)  # {ctype, name, body, count}
    struct: str | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    extra_structs: list[tuple[str, str, list]] = field(default_factory=list)  # (type, name, fields) beside `struct`


class _Lowering(ExtraLowering):
    def __init__(self, graph: Graph, plan: MemoryPlan):
        self.graph = graph
        self.plan = plan
        self.weight_bytes = 0
        self.scratch_offset = _align8(plan.peak_bytes)  # kernels' scratch space sits after every tensor
        self.scratch_bytes = 0

    # pointers ---------------------------------------------------------------------------------------------------
    def ptr(self, tensor: int, layer: _Layer, ctype: str = "int8_t") -> str:
        t = self.graph.tensors[tensor]
        if t.is_constant:
            name = self.array(layer, f"const{len(layer.arrays)}", np.asarray(t.data).reshape(-1), t.dtype)
            return name
        return f"EK_TENSOR({ctype}, {self.plan.offset_of(tensor)})"

    def array(self, layer: _Layer, suffix: str, values: np.ndarray, dtype: str) -> str:
        ctype = {"int8": "int8_t", "int32": "int32_t", "float32": "float", "int16": "int16_t"}[dtype]
        name = f"l{layer.index}_{suffix}"
        values = np.asarray(values).reshape(-1)
        if dtype == "float32":
            body = "\n".join("  " + ", ".join(c_float(v) for v in values[i:i + 8]) + ","
                             for i in range(0, len(values), 8))
        else:
            body = c_ints(values.astype(np.int64), per_line=16 if dtype == "int8" else 8)
        layer.arrays.append({"ctype": ctype, "name": name, "body": body, "count": int(values.size)})
        self.weight_bytes += int(values.size) * np.dtype(dtype).itemsize
        return name

    def call(self, layer: _Layer, kernel: str, op: Operator, *extra: str) -> None:
        """kernel(&lN_params, input, output, extra...): the call of a kernel that takes a parameter struct."""
        args = [f"&l{layer.index}_params", self.ptr(op.inputs[0], layer), self.ptr(op.outputs[0], layer), *extra]
        layer.calls.append(f"{kernel}({', '.join(args)});")

    def quant(self, tensor: int) -> tuple[float, int]:
        t = self.graph.tensors[tensor]
        if not t.is_quantized:
            return 0.0, 0
        return float(t.scale[0]), int(t.zero_point[0])

    # operators --------------------------------------------------------------------------------------------------
    def lower(self, op: Operator, index: int) -> _Layer:
        t = self.graph.tensors
        out_name = t[op.outputs[0]].name.split(";")[0]  # converters join every fused layer's name with ';'
        out_name = out_name if len(out_name) <= 60 else out_name[:57] + "..."
        comment = f"{op.opcode} -> {out_name} {list(t[op.outputs[0]].shape)}"
        layer = _Layer(index=index, name=op.opcode, comment=c_comment(comment), operator=op.index,
                       output=op.outputs[0])
        method = getattr(self, "_" + op.opcode.lower())
        method(op, layer)
        return layer

    def _conv(self, op: Operator, layer: _Layer, depthwise: bool) -> None:
        t = self.graph.tensors
        x, w_t, y = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
        _, in_h, in_w, in_c = _shape4(x.shape)
        _, out_h, out_w, out_c = _shape4(y.shape)
        in_scale, in_zp = self.quant(op.inputs[0])
        out_scale, out_zp = self.quant(op.outputs[0])
        weights = np.asarray(w_t.data, dtype=np.int64)
        k_h, k_w = weights.shape[1], weights.shape[2]
        bias = self._bias(op, out_c)
        if depthwise:  # TFLite's [1][k_h][k_w][out_c]
            flat = weights.reshape(-1, out_c)
            folded = bias - in_zp * flat.sum(axis=0)
            col_sums = np.abs(flat).sum(axis=0)
            scratch = _align8(in_c) + 8 * k_h * k_w  # an in_zp row, then one pointer per tap
        else:
            flat = weights.reshape(out_c, -1)
            folded = bias - in_zp * flat.sum(axis=1)
            col_sums = np.abs(flat).sum(axis=1)
            # two windows as int16 (in_c a multiple of 4: straight from the input; else gathered first)
            scratch = (4 if in_c % 4 == 0 else 6) * _padded4(k_h * k_w * in_c)
        filter_scales = np.broadcast_to(w_t.scale.astype(np.float64), (out_c,))
        mult, shift = zip(*(quantize_multiplier(float(in_scale) * float(fs) / float(out_scale)) for fs in filter_scales))
        lo, hi = activation_range(op.options.get("fused_activation_function", "NONE"), out_scale, out_zp)
        pad_top, pad_left = padding_for(op, self.graph)
        rq, scales, folded = requant_words(mult, shift, folded, col_sums, out_zp, (lo, hi))
        if not depthwise:
            w_name = self.array(layer, "weights", weight_pairs(flat * scales[:, None]), "int16")
        elif out_c == in_c and out_c % 4 == 0:
            w_name = self.array(layer, "weights", depthwise_blocks(flat * scales[None, :]), "int16")
        else:
            w_name = self.array(layer, "weights", flat * scales[None, :], "int16")
        b_name = self.array(layer, "bias", _int32(scales * folded, "bias"), "int32")
        r_name = self.array(layer, "rq", rq, "int32")
        self.scratch_bytes = max(self.scratch_bytes, scratch)
        layer.struct = "ek_conv_params_t"
        layer.fields = [
            ("in_h", in_h), ("in_w", in_w), ("in_c", in_c), ("out_h", out_h), ("out_w", out_w), ("out_c", out_c),
            ("k_h", k_h), ("k_w", k_w), ("stride_h", op.options.get("stride_h", 1)),
            ("stride_w", op.options.get("stride_w", 1)), ("dil_h", op.options.get("dilation_h_factor", 1)),
            ("dil_w", op.options.get("dilation_w_factor", 1)), ("pad_top", pad_top), ("pad_left", pad_left),
            ("depth_multiplier", out_c // in_c if depthwise else 1), ("in_zp", in_zp), ("out_zp", out_zp),
            ("act_min", lo), ("act_max", hi), ("weights", w_name), ("bias", b_name), ("rq", r_name),
        ]
        self.call(layer, "ek_depthwise_conv2d_s8" if depthwise else "ek_conv2d_s8", op,
                  f"EK_TENSOR(int8_t, {self.scratch_offset})")

    _conv_2d = partialmethod(_conv, depthwise=False)
    _depthwise_conv_2d = partialmethod(_conv, depthwise=True)

    def _bias(self, op: Operator, n: int) -> np.ndarray:
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            return np.asarray(self.graph.tensors[op.inputs[2]].data, dtype=np.int64).reshape(-1)
        return np.zeros(n, dtype=np.int64)

    def _fully_connected(self, op, layer):
        t = self.graph.tensors
        w_t = t[op.inputs[1]]
        weights = np.asarray(w_t.data, dtype=np.int64)
        out_n, in_n = weights.shape[0], int(np.prod(weights.shape[1:]))
        batches = t[op.inputs[0]].size // in_n
        in_scale, in_zp = self.quant(op.inputs[0])
        out_scale, out_zp = self.quant(op.outputs[0])
        bias = self._bias(op, out_n)
        flat = weights.reshape(out_n, -1)
        folded = bias - in_zp * flat.sum(axis=1)
        # in double, as TFLite Micro's GetQuantizedConvolutionMultipler (a float product would differ by an LSB)
        filter_scales = w_t.scale.astype(np.float64).reshape(-1)  # one scale, or one per output
        mult, shift = zip(*(quantize_multiplier(float(in_scale) * float(fs) / float(out_scale)) for fs in filter_scales))
        lo, hi = activation_range(op.options.get("fused_activation_function", "NONE"), out_scale, out_zp)
        rq, scales, folded = requant_words(mult, shift, folded, np.abs(flat).sum(axis=1), out_zp, (lo, hi))
        scales = np.broadcast_to(scales if len(scales) > 1 else scales[:1], (out_n,))
        layer.struct = "ek_fc_params_t"
        layer.fields = [
            ("batches", batches), ("in_n", in_n), ("out_n", out_n), ("out_zp", out_zp), ("act_min", lo),
            ("act_max", hi), ("per_channel", int(len(mult) > 1)),
            ("weights", self.array(layer, "weights", weight_pairs(flat * scales[:, None]), "int16")),
            ("bias", self.array(layer, "bias", _int32(scales * folded, "bias"), "int32")),
            ("rq", self.array(layer, "rq", rq, "int32")),
        ]
        self.call(layer, "ek_fully_connected_s8", op)

    def _pool(self, op, layer, kernel):
        t = self.graph.tensors
        _, in_h, in_w, channels = _shape4(t[op.inputs[0]].shape)
        _, out_h, out_w, _ = _shape4(t[op.outputs[0]].shape)
        out_scale, out_zp = self.quant(op.outputs[0])
        lo, hi = activation_range(op.options.get("fused_activation_function", "NONE"), out_scale, out_zp)
        pad_top, pad_left = padding_for(op, self.graph)
        layer.struct = "ek_pool_params_t"
        layer.fields = [
            ("in_h", in_h), ("in_w", in_w), ("channels", channels), ("out_h", out_h), ("out_w", out_w),
            ("k_h", op.options["filter_height"]), ("k_w", op.options["filter_width"]),
            ("stride_h", op.options.get("stride_h", 1)), ("stride_w", op.options.get("stride_w", 1)),
            ("pad_top", pad_top), ("pad_left", pad_left), ("act_min", lo), ("act_max", hi),
        ]
        self.call(layer, kernel, op)

    _average_pool_2d = partialmethod(_pool, kernel="ek_avg_pool_s8")
    _max_pool_2d = partialmethod(_pool, kernel="ek_max_pool_s8")

    def _binary(self, op, layer, kind: str):
        t = self.graph.tensors
        a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
        (sa, za), (sb, zb), (so, zo) = self.quant(a), self.quant(b), self.quant(y)
        out_dims = _shape4(t[y].shape)
        fields = {"a_mult": 0, "a_shift": 0, "b_mult": 0, "b_shift": 0, "left_shift": 0}
        if kind == "add":
            twice_max = 2 * float(max(_f32(sa), _f32(sb)))
            fields["left_shift"] = 20
            fields["a_mult"], fields["a_shift"] = quantize_multiplier(float(sa) / twice_max)
            fields["b_mult"], fields["b_shift"] = quantize_multiplier(float(sb) / twice_max)
            out_mult, out_shift = quantize_multiplier(twice_max / ((1 << 20) * float(so)))
        else:
            out_mult, out_shift = quantize_multiplier(float(sa) * float(sb) / float(so))
        lo, hi = activation_range(op.options.get("fused_activation_function", "NONE"), so, zo)

        def strides(shape):
            shape = _shape4(shape)
            s = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(4)]
            return [0 if shape[i] == 1 and out_dims[i] != 1 else s[i] for i in range(4)]

        broadcast = int(_shape4(t[a].shape) != out_dims or _shape4(t[b].shape) != out_dims)
        layer.struct = "ek_binary_params_t"
        layer.fields = [
            ("dims", _c_list(out_dims)), ("a_strides", _c_list(strides(t[a].shape))),
            ("b_strides", _c_list(strides(t[b].shape))), ("a_offset", -za), ("b_offset", -zb), ("out_zp", zo),
            ("a_mult", fields["a_mult"]), ("a_shift", fields["a_shift"]), ("b_mult", fields["b_mult"]),
            ("b_shift", fields["b_shift"]), ("left_shift", fields["left_shift"]), ("out_mult", out_mult),
            ("out_shift", out_shift), ("act_min", lo), ("act_max", hi), ("broadcast", broadcast),
        ]
        layer.calls.append(f"ek_{kind}_s8(&l{layer.index}_params, {self.ptr(a, layer)}, {self.ptr(b, layer)}, "
                           f"{self.ptr(y, layer)});")

    _add = partialmethod(_binary, kind="add")
    _mul = partialmethod(_binary, kind="mul")

    def _softmax(self, op, layer):
        x = self.graph.tensors[op.inputs[0]]
        depth = int(x.shape[-1]) if x.shape else 1
        scale, _ = self.quant(op.inputs[0])
        beta = float(op.options.get("beta", 1.0))
        real = min(beta * float(scale) * float(1 << (31 - 5)), float((1 << 31) - 1))
        mult, left_shift = quantize_multiplier(real)
        diff_min = -int(math.floor(1.0 * ((1 << 5) - 1) * (1 << (31 - 5)) / (1 << left_shift)))
        layer.struct = "ek_softmax_params_t"
        layer.fields = [("rows", x.size // depth), ("depth", depth), ("input_mult", mult),
                        ("input_left_shift", left_shift), ("diff_min", diff_min)]
        self.call(layer, "ek_softmax_s8", op)

    def _activation(self, op, layer, kernel):
        x = self.graph.tensors[op.inputs[0]]
        scale, zp = self.quant(op.inputs[0])
        q, left_shift = math.frexp(float(scale) * float(1 << (31 - 4)))
        mult = _round_half_away(q * (1 << 31))
        radius = int(math.floor(1.0 * ((1 << 4) - 1) * (1 << (31 - 4)) / (2.0 ** left_shift)))
        layer.struct = "ek_activation_params_t"
        layer.fields = [("size", x.size), ("in_zp", zp), ("range_radius", radius), ("mult", mult),
                        ("left_shift", left_shift)]
        self.call(layer, kernel, op)

    _logistic = partialmethod(_activation, kernel="ek_logistic_s8")
    _tanh = partialmethod(_activation, kernel="ek_tanh_s8")

    def _quantize(self, op, layer):
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        so, zo = self.quant(op.outputs[0])
        if x.dtype == "float32":
            layer.calls.append(f"ek_quantize_f32_s8({y.size}, {c_float(so)}, {zo}, "
                               f"{self.ptr(op.inputs[0], layer, 'float')}, {self.ptr(op.outputs[0], layer)});")
        else:
            si, zi = self.quant(op.inputs[0])
            mult, shift = quantize_multiplier(float(si) / float(so))
            layer.calls.append(f"ek_requantize_s8({y.size}, {zi}, {mult}, {shift}, {zo}, "
                               f"{self.ptr(op.inputs[0], layer)}, {self.ptr(op.outputs[0], layer)});")

    def _dequantize(self, op, layer):
        x = self.graph.tensors[op.inputs[0]]
        si, zi = self.quant(op.inputs[0])
        layer.calls.append(f"ek_dequantize_s8_f32({x.size}, {c_float(si)}, {zi}, {self.ptr(op.inputs[0], layer)}, "
                           f"{self.ptr(op.outputs[0], layer, 'float')});")

    def _mean(self, op, layer):
        if mean_layout(op, self.graph) is None:  # non-adjacent axes: the general reduction of ek_reduce.c
            self._reduce(op, layer)
            return
        outer, reduce, inner = mean_layout(op, self.graph)
        (si, zi), (so, zo) = self.quant(op.inputs[0]), self.quant(op.outputs[0])
        mult, shift = quantize_multiplier(float(si) / float(so))
        # QuantizedMeanOrSum folds 1/count into the multiplier, keeping the shift in range
        fold = min(reduce.bit_length() - 1, 32, 31 + shift)
        mult, shift = int((mult << fold) // reduce), shift - fold
        layer.struct = "ek_mean_params_t"
        layer.fields = [("outer", outer), ("reduce", reduce), ("inner", inner), ("in_zp", zi), ("out_zp", zo),
                        ("mult", mult), ("shift", shift)]
        self.call(layer, "ek_mean_s8", op)

    def _pad(self, op, layer):
        in_dims, out_dims, before = pad_layout(op, self.graph)
        _, zo = self.quant(op.outputs[0])
        value = zo
        if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(np.asarray(self.graph.tensors[op.inputs[2]].data).reshape(-1)[0])
        layer.struct = "ek_pad_params_t"
        layer.fields = [("in_dims", _c_list(in_dims)), ("out_dims", _c_list(out_dims)), ("before", _c_list(before)),
                        ("value", value)]
        self.call(layer, "ek_pad_s8", op)

    _padv2 = _pad

    def _concatenation(self, op, layer):
        t = self.graph.tensors
        out_shape = tuple(int(d) for d in t[op.outputs[0]].shape)
        axis = int(op.options.get("axis", 0)) % max(len(out_shape), 1)
        outer = int(np.prod(out_shape[:axis], dtype=np.int64))
        out_stride = int(np.prod(out_shape[axis:], dtype=np.int64))
        out_offset = self.plan.offset_of(op.outputs[0]) if not t[op.outputs[0]].is_constant else 0
        position = 0
        for i in op.inputs:  # TFLite Micro copies int8 inputs as they are (the converter shares their scale)
            block = int(np.prod(t[i].shape[axis:], dtype=np.int64))
            layer.calls.append(f"ek_copy_blocks({outer}, {block}, {out_stride}, {self.ptr(i, layer)}, "
                               f"EK_TENSOR(int8_t, {out_offset + position}));")
            position += block
        act = op.options.get("fused_activation_function", "NONE")
        if act != "NONE":
            raise EdgekitError(f"{self.graph.name}: CONCATENATION with a fused {act} is not supported; "
                               f"use --backend tflm for this model")

    def _reshape(self, op, layer):
        """Only reached when the view could not alias its input (a constant input): copy it."""
        layer.calls.append(f"ek_copy_blocks(1, {self.graph.tensors[op.outputs[0]].nbytes}, 0, "
                           f"(const int8_t *){self.ptr(op.inputs[0], layer)}, {self.ptr(op.outputs[0], layer)});")

    _squeeze = _reshape
    _expand_dims = _reshape


def _padded4(n: int) -> int:
    return (n + 3) // 4 * 4


def _align8(n: int) -> int:
    return (n + 7) // 8 * 8


def weight_pairs(rows: np.ndarray) -> np.ndarray:
    """A weight matrix (already scaled, see requant_words) in the kernels' order (ek_kernels.h): rows
    zero-padded to a multiple of 4 columns, each group of four columns as (w0, w2, w1, w3), rows in pairs
    interleaved group by group (a last odd row plain), so that the inner loop walks one pointer and feeds every
    word to SMLAD unextended."""
    rows = np.asarray(rows, dtype=np.int64)
    n_rows, n = rows.shape
    padded = np.zeros((n_rows, _padded4(n)), dtype=np.int64)
    padded[:, :n] = rows
    groups = padded.reshape(n_rows, -1, 4)[:, :, [0, 2, 1, 3]]
    full = n_rows // 2 * 2
    pairs = groups[:full].reshape(full // 2, 2, groups.shape[1], 4).transpose(0, 2, 1, 3)
    return np.concatenate([pairs.reshape(-1), groups[full:].reshape(-1)])


def depthwise_blocks(taps: np.ndarray) -> np.ndarray:
    """Depthwise weights [tap][channel] (already scaled) in the kernels' order: per block of four channels and per tap
    (w_c, w_c+2, w_c+1, w_c+3), the halves SMLABB/SMLATT pair with SXTB16 and SXTB16 ROR #8 of four inputs."""
    taps = np.asarray(taps, dtype=np.int64)
    n_taps, channels = taps.shape
    return (taps.reshape(n_taps, channels // 4, 4)[:, :, [0, 2, 1, 3]].transpose(1, 0, 2)).reshape(-1)


def multiply_by_quantized_multiplier(x: int, mult: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier on int32 (the saturating doubling high multiply, then the rounding
    divide by a power of two), for what the generator computes once instead of the kernels."""
    x = ((x << max(shift, 0)) + (1 << 31)) % (1 << 32) - (1 << 31)
    if x == mult == -(1 << 31):
        return (1 << 31) - 1
    ab = x * mult
    q = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    v = q // (1 << 31) if q >= 0 else -(-q // (1 << 31))
    right = max(-shift, 0)
    mask = (1 << right) - 1
    return (v >> right) + int((v & mask) > (mask >> 1) + int(v < 0))


def requant_words(mult, shift, folded_bias: np.ndarray, abs_weight_sums: np.ndarray, out_zp: int, act: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' rq[] words per output channel (ek_kernels.h), the factor 2^(1 + left shift) the generator
    multiplies that channel's weights and bias by, and the biases to scale.

    TFLite's left shift (a multiplier of 1 or more) is folded into the weights, so the kernels only ever shift
    right; the scaled accumulator must stay under 2^31. A channel whose weights are all zero gives a constant
    (converters leave such dead channels with biases near 2^30): computed here, its words produce it directly."""
    words, scales = [], []
    bias = np.asarray(folded_bias, dtype=np.int64).copy()
    bounds = np.abs(bias) + 128 * np.asarray(abs_weight_sums, dtype=np.int64)
    for i, (m, s) in enumerate(zip(mult, shift)):
        left, e = max(s, 0), max(-s, 0)
        scale = 2 << left
        bound = scale * int(bounds.max() if len(mult) == 1 else bounds[i])  # one multiplier may serve every row
        if bound >= 1 << 31 and len(mult) > 1 and abs_weight_sums[i] == 0:
            value = min(max(multiply_by_quantized_multiplier(int(bias[i]), m, s) + out_zp, act[0]), act[1])
            words.append((0, value - out_zp, 0, 0))
            scales.append(2)
            bias[i] = 0
            continue
        if bound >= 1 << 31 or scale * 128 > 1 << 15:
            raise EdgekitError(f"an accumulator of this layer may reach {bound} (bias plus weights times inputs, "
                               "scaled); the native kernels expect under 2^31")
        words.append((m, (1 << (e - 1)) if e else 0, e, -1 if e else 0))
        scales.append(scale)
    return np.array(words, dtype=np.int64).reshape(-1), np.array(scales, dtype=np.int64), bias


def _int32(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < -(1 << 31) or values.max() >= (1 << 31)):
        raise EdgekitError(f"a folded {what} does not fit in 32 bits; expected a model with int32 biases")
    return values


def _c_list(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


# ----------------------------------------------------------------------------------------------------------------

def _tensor_info(graph: Graph, index: int, plan: MemoryPlan) -> dict:
    t = graph.tensors[index]
    scale, zp = (float(t.scale[0]), int(t.zero_point[0])) if t.is_quantized else (0.0, 0)
    return {"type": _TYPE_ENUM[t.dtype], "bytes": t.nbytes, "elements": t.size, "scale": c_float(scale),
            "zero_point": zp, "offset": plan.offset_of(index), "shape": list(t.shape), "dtype": t.dtype}


def _lowered(graph: Graph, preserve_input: bool):
    """(canonicalization, plan, lowering, layers, arena bytes): what generate_native_model compiles and
    reserves, shared with native_arena_bytes so that analyze's figure is the build's."""
    from edgekit.codegen.canonical import canonicalize
    from edgekit.codegen.native_plan import overlap_hints

    check_native_support(graph)
    canonical = canonicalize(graph)
    graph = canonical.graph
    plan = plan_activations(graph, overlaps=overlap_hints(graph), keep_inputs=preserve_input)
    lowering = _Lowering(graph, plan)
    layers: list[_Layer] = []
    for op in graph.operators:
        if op.opcode in VIEW_OPS and op.outputs[0] in plan.aliases:
            continue  # a view: same bytes, nothing to run
        layers.append(lowering.lower(op, len(layers)))
    arena_bytes = max(lowering.scratch_offset + lowering.scratch_bytes if lowering.scratch_bytes else plan.peak_bytes,
                      16)
    return canonical, plan, lowering, layers, arena_bytes


def native_arena_bytes(graph: Graph, preserve_input: bool = False) -> int:
    """The arena generate_native_model would reserve, without writing anything (analyze reports it)."""
    return native_footprint(graph, preserve_input)[0]


def native_footprint(graph: Graph, preserve_input: bool = False) -> tuple[int, int]:
    """(arena bytes, constant bytes in flash) of the model generate_native_model would write. The constants are
    the kernels' own layouts (weights pre-extended to int16 where the SIMD loops read them so, per-channel
    requantization tables), not the .tflite's int8 tensors: analyze counts what the firmware really holds."""
    lowered = _lowered(graph, preserve_input)
    return lowered[4], int(lowered[2].weight_bytes)


def generate_native_model(graph: Graph, out_dir, *, name: str | None = None,
                          preserve_input: bool = False) -> NativeModel:
    """Write model.c, model.h, the kernel library and the contract headers into out_dir (atomically).

    `preserve_input` keeps the input buffer intact across ek_model_invoke (a little more RAM); by default its
    bytes are reused once the first layers have read them, as TFLite Micro does.
    """
    canonical, plan, lowering, layers, arena_bytes = _lowered(graph, preserve_input)
    graph = canonical.graph
    model_name = name or graph.name
    context = {
        "model_name": model_name,
        "source": graph.name,
        "sha256": graph.sha256,
        "arena_bytes": arena_bytes,
        "weight_bytes": lowering.weight_bytes,
        "layers": layers,
        "uses_ops_header": bool(kernel_files([c for layer in layers for c in layer.calls])),
        "input": _tensor_info(graph, graph.inputs[0], plan),
        "output": _tensor_info(graph, graph.outputs[0], plan),
        "layer_outputs": [(plan.offset_of(l.output), graph.tensors[l.output].nbytes) for l in layers],
        "preserve_input": preserve_input,
        "guard": "EK_MODEL_H",
        "c_identifier": c_identifier,
        "c_string": c_string,
    }
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgekitError(f"output {out_dir} exists and is not a folder; expected a folder path")
    # everything is rendered before anything is written; each file then lands whole (the folder may hold others')
    contents = {"model.c": render("native/model.c.j2", **context).encode(),
                "model.h": render("native/model.h.j2", **context).encode()}
    for f in KERNEL_FILES + tuple(kernel_files([c for layer in layers for c in layer.calls])):
        contents[f] = (templates_dir() / "native" / f).read_bytes()
    for f in CONTRACT_FILES:
        contents[f] = (templates_dir() / "app" / f).read_bytes()
    for f, data in contents.items():
        atomic_write_bytes(out_dir / f, data)
    files = list(contents)
    return NativeModel(files=[out_dir / f for f in files], arena_bytes=arena_bytes, layers=[l.name for l in layers],
                       weight_bytes=lowering.weight_bytes, input_preserved=preserve_input, plan=plan,
                       layer_operators=[canonical.origins[l.operator] for l in layers], canonical=canonical.notes)
