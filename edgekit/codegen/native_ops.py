"""The native backend's ops beyond the hot kernels of ek_kernels.c: what Keras 3 and the TFLite converter emit
for activations (LEAKY_RELU, HARD_SWISH, PRELU, RELU, RELU6), element-wise arithmetic (SUB, MAXIMUM, MINIMUM,
SQUARED_DIFFERENCE, RSQRT), reductions over any axes (MEAN, SUM, REDUCE_MAX, REDUCE_MIN), data movement
(TRANSPOSE, SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, PACK, GATHER, DEPTH_TO_SPACE, SPACE_TO_DEPTH, the
resizes) and the matrix ops of attention blocks and decoders (BATCH_MATMUL, TRANSPOSE_CONV).

Each op's integer parameters are computed as TFLite Micro's Prepare computes them (same float or double
arithmetic). Unary int8 ops become a 256-entry table, filled here by running TFLite Micro's integer arithmetic
for each of the 256 inputs (`_fixed`): the device does one lookup per element, with exactly the kernel's result.
The C kernels live in templates/native/ek_elementwise.c, ek_shape.c, ek_reduce.c and ek_matmul.c (declared in
ek_ops.h); a generated model ships only the files its ops call.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.tflite_model import Graph, Operator

MAX_DIMS = 8  # EK_MAX_DIMS of ek_ops.h

LUT_OPS = frozenset({"LEAKY_RELU", "HARD_SWISH", "RELU", "RELU6", "RSQRT"})
BINARY_OPS = {"SUB": "EK_SUB", "SQUARED_DIFFERENCE": "EK_SQUARED_DIFFERENCE", "MAXIMUM": "EK_MAXIMUM",
              "MINIMUM": "EK_MINIMUM", "PRELU": "EK_PRELU"}
REDUCE_OPS = {"SUM": "EK_REDUCE_SUM", "REDUCE_MAX": "EK_REDUCE_MAX", "REDUCE_MIN": "EK_REDUCE_MIN",
              "MEAN": "EK_REDUCE_SUM"}
COPY_OPS = frozenset({"TRANSPOSE", "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "UNPACK", "PACK",
                      "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"})
OTHER_OPS = frozenset({"GATHER", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "BATCH_MATMUL", "TRANSPOSE_CONV"})
# float32 ops that TFLite Micro runs between a DEQUANTIZE and a QUANTIZE of an int8 model (it has no int8 NEG:
# Keras' LayerNormalization converts to one); IEEE negation is exact, so the native result is the same bits
FLOAT_OPS = frozenset({"NEG"})
EXTRA_OPS = LUT_OPS | frozenset(BINARY_OPS) | frozenset(REDUCE_OPS) - {"MEAN"} | COPY_OPS | OTHER_OPS | FLOAT_OPS

# kernel file -> the C functions it defines (a model ships a file when a layer calls one of them)
KERNEL_SOURCES = {
    "ek_elementwise.c": ("ek_lut_s8", "ek_binary_ex_s8", "ek_neg_f32"),
    "ek_shape.c": ("ek_copy_nd", "ek_gather_s8", "ek_resize_nearest_s8", "ek_resize_bilinear_s8"),
    "ek_reduce.c": ("ek_reduce_s8",),
    "ek_matmul.c": ("ek_batch_matmul_s8", "ek_transpose_conv_s8"),
}
SHARED_HEADERS = ("ek_ops.h", "ek_fixedpoint.h")

# ops whose int8 kernel in TFLite Micro copies bytes: the converter gives input and output one quantization
_SAME_QUANT = COPY_OPS | {"GATHER", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "MAXIMUM", "MINIMUM",
                          "REDUCE_MAX", "REDUCE_MIN"}


def kernel_files(calls: list[str]) -> list[str]:
    """The extra kernel files (with their headers) that these C calls need, in a stable order."""
    text = "\n".join(calls)
    sources = [f for f, functions in KERNEL_SOURCES.items() if any(fn + "(" in text for fn in functions)]
    return sources + list(SHARED_HEADERS) if sources else []


# ----------------------------------------------------------------------------------------------------------------
# TFLite Micro's integer arithmetic in Python (C semantics: truncating division, two's complement int32).

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(x: int) -> int:
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm(a: int, b: int, bits: int = 32) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul for int32 (or int16 with bits=16)."""
    lo = -(1 << (bits - 1))
    if a == b == lo:
        return (1 << (bits - 1)) - 1
    ab = a * b
    nudge = (1 << (bits - 2)) if ab >= 0 else 1 - (1 << (bits - 2))
    return _trunc_div(ab + nudge, 1 << (bits - 1))


def rdbpot(x: int, exponent: int) -> int:
    """gemmlowp's RoundingDivideByPOT: half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def requantize(x: int, mult: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (the double-rounding form TFLite Micro builds by default)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot(srdhm(_wrap32(x * (1 << left)), mult), right)


def _sat_shl(x: int, exponent: int) -> int:
    """gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent."""
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return _I32_MAX
    if x < -threshold:
        return _I32_MIN
    return x << exponent


def _inv_sqrt_multiplier(value: int) -> tuple[int, int]:
    """TFLite's GetInvSqrtQuantizedMultiplierExp with reverse_shift -1 (gemmlowp Newton-Raphson, 3 integer bits)."""
    if value <= 1:
        return _I32_MAX, 0
    shift = 11
    while value >= 1 << 29:
        value //= 4
        shift += 1
    leading = 32 - value.bit_length()
    pairs = (leading - 1) // 2 - 1
    shift -= pairs
    value <<= 2 * pairs
    half_input = rdbpot(value >> 1, 1)  # F3 raw
    three_halves = (1 << 28) + (1 << 27)
    x = 1 << 28  # F3 one
    for _ in range(5):
        x3 = _sat_shl(srdhm(srdhm(x, x), x), 6)  # F9 -> F3
        x = _sat_shl(_wrap32(srdhm(three_halves, x) - srdhm(half_input, x3)), 3)  # F6 -> F3
    x = srdhm(x, 1518500250)  # times sqrt(2)/2 in F0
    if shift < 0:
        x = _wrap32(x << -shift)
        shift = 0
    return x, -shift


def _f32(x) -> np.float32:
    return np.float32(x)


def _round_half_away(x: float) -> int:
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _quantize_multiplier(real: float) -> tuple[int, int]:
    from edgekit.codegen.native import quantize_multiplier

    return quantize_multiplier(float(real))


def unary_table(op: Operator, graph: Graph) -> np.ndarray:
    """The int8 output of each of the 256 int8 inputs, as TFLite Micro's kernel computes it."""
    t = graph.tensors
    x_t, y_t = t[op.inputs[0]], t[op.outputs[0]]
    si, zi = _f32(x_t.scale[0]), int(x_t.zero_point[0])
    so, zo = _f32(y_t.scale[0]), int(y_t.zero_point[0])
    code = op.opcode
    inputs = range(-128, 128)
    if code == "LEAKY_RELU":
        alpha = _f32(op.options.get("alpha", 0.2))
        ma, sa = _quantize_multiplier(float(_f32(_f32(si * alpha) / so)))
        mi, sid = _quantize_multiplier(float(_f32(si / so)))
        negative = ma < 0
        ma = abs(ma)

        def one(q):
            v = q - zi
            if v >= 0:
                return zo + requantize(v, mi, sid)
            scaled = requantize(v, ma, sa)
            return zo + (-scaled if negative else scaled)
    elif code == "RELU":
        m, s = _quantize_multiplier(float(_f32(si / so)))
        lo = max(-128, zo)

        def one(q):
            return max(lo, zo + requantize(q - zi, m, s))
    elif code == "RELU6":
        six = int(np.clip(_round_half_away(float(_f32(6.0) / si)) + zi, -128, 127))

        def one(q):
            return min(max(q, zi), six)
    elif code == "HARD_SWISH":
        hires = _f32(_f32(1.0 / 128.0) * si)
        out_m32, out_exp = _quantize_multiplier(float(_f32(hires / so)))
        rel_m32, rel_exp = _quantize_multiplier(float(_f32(hires / _f32(3.0 / 32768.0))))
        out_m16, rel_m16 = (32767 if m >= _I32_MAX - (1 << 15) else (m + (1 << 15)) >> 16
                            for m in (out_m32, rel_m32))

        def sat16(v):
            return max(-32768, min(32767, v))

        def one(q):
            v = q - zi
            hi = v * 128
            pre = srdhm(hi, out_m16, 16)
            r = hi
            if rel_exp > 0:
                r = sat16(r * (1 << (rel_exp - 1)))
            r = srdhm(r, rel_m16, 16)
            if rel_exp > 0:
                r = sat16(r * 2)
            if rel_exp < 0:
                r = rdbpot(r, -rel_exp)
            r = (r + (1 << 15)) >> 1
            product = 32767 if r == pre == -32768 else _trunc_div(r * pre, 1 << 15)
            return rdbpot(product, -out_exp) + zo
    elif code == "RSQRT":
        m, s = _quantize_multiplier(1.0 / float(_f32(np.sqrt(si)) * so))

        def one(q):
            v = q - zi
            if v == 0:
                return 127
            inv, inv_shift = _inv_sqrt_multiplier(v)
            data = requantize(1, inv, inv_shift + 20)
            return requantize(data, m, s - 20) + zo
    else:  # pragma: no cover - LUT_OPS lists the ops above
        raise ValueError(code)
    return np.array([min(127, max(-128, one(q))) for q in inputs], dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Shapes and strides.

def _shape(graph: Graph, index: int) -> tuple[int, ...]:
    return tuple(int(d) for d in graph.tensors[index].shape)


def _strides(shape) -> list[int]:
    return [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]


def broadcast_strides(out_shape, in_shape) -> list[int]:
    """Element strides of an input for each output dimension (numpy broadcasting: 0 where it repeats)."""
    in_shape = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    s = _strides(in_shape)
    return [0 if d == 1 and o != 1 else st for d, o, st in zip(in_shape, out_shape, s)]


def simplify(dims, *stride_lists) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dimensions and merge neighbours that are contiguous in every stride list (fewer loops)."""
    keep = [i for i, d in enumerate(dims) if d != 1] or [len(dims) - 1] if dims else []
    dims = [int(dims[i]) for i in keep] if keep else [1]
    strides = [[int(s[i]) for i in keep] if keep else [0] for s in stride_lists]
    merged_dims, merged = [dims[0]], [[s[0]] for s in strides]
    for k in range(1, len(dims)):
        if all(m[-1] == s[k] * dims[k] for m, s in zip(merged, strides)):
            merged_dims[-1] *= dims[k]
            for m, s in zip(merged, strides):
                m[-1] = s[k]
        else:
            merged_dims.append(dims[k])
            for m, s in zip(merged, strides):
                m.append(s[k])
    return merged_dims, merged


def _axes(graph: Graph, index: int, rank: int) -> list[int]:
    return sorted({int(a) % rank for a in np.asarray(graph.tensors[index].data).reshape(-1)})


def strided_slice_ranges(op: Operator, graph: Graph) -> list[range] | None:
    """The input positions a STRIDED_SLICE takes along each axis (TFLite's masks), or None when it uses the
    ellipsis or new-axis masks or the offset form, which the native backend leaves to TFLite Micro."""
    o = op.options
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0) or o.get("offset", False):
        return None
    shape = _shape(graph, op.inputs[0])
    begin, end, step = (np.asarray(graph.tensors[i].data).reshape(-1).tolist() for i in op.inputs[1:4])
    ranges = []
    for axis, dim in enumerate(shape):
        if axis >= len(begin):
            ranges.append(range(dim))
            continue
        if o.get("shrink_axis_mask", 0) >> axis & 1:
            b = int(begin[axis]) + (dim if int(begin[axis]) < 0 else 0)
            ranges.append(range(b, b + 1))
            continue
        b = None if o.get("begin_mask", 0) >> axis & 1 else int(begin[axis])
        e = None if o.get("end_mask", 0) >> axis & 1 else int(end[axis])
        ranges.append(range(*slice(b, e, int(step[axis])).indices(dim)))
    return ranges


def copy_plans(op: Operator, graph: Graph) -> list[tuple[int, int, list[int], list[int], list[int], int, int]]:
    """Every strided copy a data-movement op is: (input, output, dims, in_strides, out_strides, in_offset,
    out_offset), element strides and offsets into the input and output tensors."""
    code = op.opcode
    data = lambda i: np.asarray(graph.tensors[i].data).reshape(-1)  # noqa: E731
    if code == "PACK":
        out_shape = _shape(graph, op.outputs[0])
        axis = int(op.options.get("axis", 0)) % len(out_shape)
        out_s = _strides(out_shape)
        plans = []
        for n, i in enumerate(op.inputs):
            shape = _shape(graph, i)
            plans.append((i, op.outputs[0], list(shape), _strides(shape), out_s[:axis] + out_s[axis + 1:], 0,
                          n * out_s[axis]))
        return plans
    x = op.inputs[0] if code != "SPLIT" else op.inputs[1]
    in_shape = _shape(graph, x)
    in_s = _strides(in_shape)
    if code == "TRANSPOSE":
        perm = [int(p) for p in data(op.inputs[1])]
        dims = [in_shape[p] for p in perm]
        return [(x, op.outputs[0], dims, [in_s[p] for p in perm], _strides(dims), 0, 0)]
    if code == "SLICE":
        begin, size = data(op.inputs[1]), data(op.inputs[2])
        dims = [int(in_shape[a] - begin[a]) if int(size[a]) < 0 else int(size[a]) for a in range(len(in_shape))]
        offset = int(sum(int(b) * s for b, s in zip(begin, in_s)))
        return [(x, op.outputs[0], dims, in_s, _strides(dims), offset, 0)]
    if code == "STRIDED_SLICE":
        ranges = strided_slice_ranges(op, graph)
        dims = [len(r) for r in ranges]
        offset = sum((r.start if len(r) else 0) * s for r, s in zip(ranges, in_s))
        return [(x, op.outputs[0], dims, [r.step * s for r, s in zip(ranges, in_s)], _strides(dims), offset, 0)]
    if code in ("SPLIT", "SPLIT_V", "UNPACK"):
        if code == "UNPACK":
            axis = int(op.options.get("axis", 0)) % len(in_shape)
        else:
            axis = int(data(op.inputs[0] if code == "SPLIT" else op.inputs[2])[0]) % len(in_shape)
        plans, start = [], 0
        for y in op.outputs:
            dims = list(in_shape)
            dims[axis] = 1 if code == "UNPACK" else _shape(graph, y)[axis]
            plans.append((x, y, dims, in_s, _strides(dims), start * in_s[axis], 0))
            start += dims[axis]
        return plans
    if code in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        b = int(op.options.get("block_size", 1))
        n, h, w, c = in_shape
        if code == "DEPTH_TO_SPACE":
            co = c // (b * b)  # out[n][h*b+i][w*b+j][k] = in[n][h][w][(i*b+j)*co+k]
            dims = [n, h, b, w, b, co]
            strides = [h * w * c, w * c, b * co, c, co, 1]
        else:
            dims = [n, h // b, w // b, b, b, c]  # out[n][y][x][(i*b+j)*c+k] = in[n][y*b+i][x*b+j][k]
            strides = [h * w * c, b * w * c, b * c, w * c, c, 1]
        return [(x, op.outputs[0], dims, strides, _strides(dims), 0, 0)]
    raise ValueError(code)  # pragma: no cover


def reduce_layout(op: Operator, graph: Graph) -> tuple[list[int], list[int], list[int], list[int], int]:
    """(kept dims, kept strides, reduced dims, reduced strides, count) of a reduction over any axes."""
    shape = _shape(graph, op.inputs[0]) or (1,)
    axes = _axes(graph, op.inputs[1], len(shape))
    s = _strides(shape)
    kept = [a for a in range(len(shape)) if a not in axes]
    kd, (ks,) = simplify([shape[a] for a in kept] or [1], [s[a] for a in kept] or [0])
    rd, (rs,) = simplify([shape[a] for a in axes] or [1], [s[a] for a in axes] or [0])
    return kd, ks, rd, rs, int(np.prod([shape[a] for a in axes], dtype=np.int64))


def nearest_indices(out_size: int, in_size: int, align_corners: bool, half_pixel: bool) -> list[int]:
    """TFLite's GetNearestNeighbor for each output position (its float32 arithmetic)."""
    if align_corners and out_size > 1:
        scale = _f32(in_size - 1) / _f32(out_size - 1)
    else:
        scale = _f32(in_size) / _f32(out_size)
    offset = _f32(0.5 if half_pixel else 0.0)
    result = []
    for v in range(out_size):
        value = _f32(_f32(v) + offset) * scale
        i = _round_half_away(float(value)) if align_corners else int(math.floor(float(value)))
        i = min(i, in_size - 1)
        result.append(max(0, i) if half_pixel else i)
    return result


def bilinear_axis(out_size: int, in_size: int, align_corners: bool, half_pixel: bool):
    """(lower, upper, position in 1/1024) per output position: TFLite's ComputeInterpolationValuesInteger."""
    scale = _trunc_div((1 << 10) * in_size + out_size // 2, out_size)
    if align_corners and out_size > 1:
        scale = _trunc_div((1 << 10) * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
    lower, upper, pos = [], [], []
    for v in range(out_size):
        p = v * scale + scale // 2 - (1 << 9) if half_pixel else v * scale
        lower.append(max(_trunc_div(p, 1 << 10), 0))
        upper.append(min(_trunc_div(p + (1 << 10) - 1, 1 << 10), in_size - 1))
        pos.append(p)
    return lower, upper, pos


def transpose_conv_padding(op: Operator, graph: Graph) -> tuple[int, int]:
    """TFLite Micro pads a transposed convolution as the convolution from its output back to its input."""
    _, out_h, out_w, _ = _shape(graph, op.outputs[0])
    _, k_h, k_w, _ = _shape(graph, op.inputs[1])
    pads = []
    for size, k, stride in ((out_h, k_h, int(op.options.get("stride_h", 1))),
                            (out_w, k_w, int(op.options.get("stride_w", 1)))):
        if op.options.get("padding", "SAME") == "SAME":
            conv_out = (size + stride - 1) // stride
        else:
            conv_out = (size + stride - k) // stride
        pads.append(max((conv_out - 1) * stride + k - size, 0) // 2)
    return pads[0], pads[1]


# ----------------------------------------------------------------------------------------------------------------
# What the native backend refuses among these ops.

def extra_reasons(op: Operator, graph: Graph) -> list[str]:
    """Why the native backend cannot compile this op (int8 tensors already checked), or []."""
    t = graph.tensors
    code, name = op.opcode, op.display_name
    reasons = []
    acts = [i for i in op.inputs if i >= 0 and not t[i].is_constant] + list(op.outputs)
    if any(len(t[i].shape) > MAX_DIMS - (2 if code in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH") else 0) for i in acts):
        reasons.append(f"{name} on tensors of more than {MAX_DIMS} dimensions")
    params = {"TRANSPOSE": [1], "SLICE": [1, 2], "STRIDED_SLICE": [1, 2, 3], "SPLIT": [0], "SPLIT_V": [1, 2],
              "GATHER": [1], "RESIZE_NEAREST_NEIGHBOR": [1], "RESIZE_BILINEAR": [1], "TRANSPOSE_CONV": [0, 1],
              "SUM": [1], "REDUCE_MAX": [1], "REDUCE_MIN": [1], "MEAN": [1]}.get(code, [])
    if any(i >= len(op.inputs) or op.inputs[i] < 0 or t[op.inputs[i]].data is None for i in params):
        reasons.append(f"{name} with computed {'weights' if code == 'TRANSPOSE_CONV' else 'parameters'}")
        return reasons
    if code in _SAME_QUANT:
        ends = [i for i in acts if t[i].is_quantized]
        q = {(float(t[i].scale[0]), int(t[i].zero_point[0])) for i in ends}
        if len(q) > 1:
            reasons.append(f"{name} with different input and output quantization")
    if code in ("SUB", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "PRELU"):
        out = _shape(graph, op.outputs[0])
        for i in op.inputs[:2]:
            shape = _shape(graph, i)
            padded = (1,) * (len(out) - len(shape)) + shape
            if len(shape) > len(out) or any(d != o and d != 1 for d, o in zip(padded, out)):
                reasons.append(f"{name} with incompatible shapes")
        if code == "PRELU" and t[op.inputs[1]].dtype != "int8":
            reasons.append(f"{name} with {t[op.inputs[1]].dtype} alpha")
    if code == "STRIDED_SLICE" and strided_slice_ranges(op, graph) is None:
        reasons.append(f"{name} with ellipsis or new-axis masks")
    if code == "GATHER" and (int(op.options.get("batch_dims", 0)) != 0 or t[op.inputs[1]].dtype not in
                             ("int32", "int64")):
        reasons.append(f"{name} with batch dimensions")
    if code == "BATCH_MATMUL" and any(t[i].per_channel for i in op.inputs[:2]):
        reasons.append(f"{name} with per-channel quantization")
    if code == "TRANSPOSE_CONV":
        w = t[op.inputs[1]]
        if w.dtype != "int8":
            reasons.append(f"{name} with {w.dtype} weights")
        if len(op.inputs) > 3 and op.inputs[3] >= 0 and t[op.inputs[3]].dtype != "int32":
            reasons.append(f"{name} with {t[op.inputs[3]].dtype} bias")
    if code in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "TRANSPOSE_CONV", "DEPTH_TO_SPACE",
                "SPACE_TO_DEPTH") and any(len(t[i].shape) != 4 for i in acts):
        reasons.append(f"{name} on tensors that are not 4-D")
    return reasons


# ----------------------------------------------------------------------------------------------------------------
# Lowering (mixed into edgekit.codegen.native._Lowering).

def _c_list(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def _padded(values, n: int = MAX_DIMS) -> list[int]:
    values = [int(v) for v in values]
    return values + [0] * (n - len(values))


class ExtraLowering:
    """Lowering methods of the ops of this module; `self` is an edgekit.codegen.native._Lowering."""

    def _lut(self, op, layer):
        table = self.array(layer, "table", unary_table(op, self.graph), "int8")
        size = self.graph.tensors[op.outputs[0]].size
        layer.calls.append(f"ek_lut_s8({size}, {table}, {self.ptr(op.inputs[0], layer)}, "
                           f"{self.ptr(op.outputs[0], layer)});")

    _leaky_relu = _hard_swish = _relu = _relu6 = _rsqrt = _lut

    def _binary_ex(self, op, layer):
        from edgekit.codegen.native import activation_range, quantize_multiplier

        t = self.graph.tensors
        a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
        (sa, za), (sb, zb), (so, zo) = self.quant(a), self.quant(b), self.quant(y)
        code = op.opcode
        f = {"left_shift": 0, "a_mult": 0, "a_shift": 0, "b_mult": 0, "b_shift": 0, "out_mult": 0, "out_shift": 0}
        lo, hi = -128, 127
        if code == "SUB":
            twice = _f32(2) * max(_f32(sa), _f32(sb))
            f["left_shift"] = 20
            f["a_mult"], f["a_shift"] = quantize_multiplier(float(_f32(_f32(sa) / twice)))
            f["b_mult"], f["b_shift"] = quantize_multiplier(float(_f32(_f32(sb) / twice)))
            f["out_mult"], f["out_shift"] = quantize_multiplier(float(_f32(twice / _f32(_f32(1 << 20) * _f32(so)))))
            lo, hi = activation_range(op.options.get("fused_activation_function", "NONE"), so, zo)
        elif code == "SQUARED_DIFFERENCE":
            twice = 2.0 * float(max(_f32(sa), _f32(sb)))
            f["left_shift"] = 7
            f["a_mult"], f["a_shift"] = quantize_multiplier(float(_f32(sa)) / twice)
            f["b_mult"], f["b_shift"] = quantize_multiplier(float(_f32(sb)) / twice)
            f["out_mult"], f["out_shift"] = quantize_multiplier(twice * twice / float(_f32(_f32(1 << 14) * _f32(so))))
        elif code == "PRELU":
            f["a_mult"], f["a_shift"] = quantize_multiplier(float(_f32(sa)) / float(_f32(so)))
            f["b_mult"], f["b_shift"] = quantize_multiplier(float(_f32(sa)) * float(_f32(sb)) / float(_f32(so)))
        out = tuple(int(d) for d in t[y].shape) or (1,)
        dims, (sa_list, sb_list) = simplify(out, broadcast_strides(out, t[a].shape), broadcast_strides(out, t[b].shape))
        layer.struct = "ek_binary_ex_params_t"
        layer.fields = [
            ("kind", BINARY_OPS[code]), ("rank", len(dims)), ("dims", _c_list(_padded(dims))),
            ("a_strides", _c_list(_padded(sa_list))), ("b_strides", _c_list(_padded(sb_list))),
            ("a_offset", -za), ("b_offset", -zb), ("out_zp", zo), ("left_shift", f["left_shift"]),
            ("a_mult", f["a_mult"]), ("a_shift", f["a_shift"]), ("b_mult", f["b_mult"]), ("b_shift", f["b_shift"]),
            ("out_mult", f["out_mult"]), ("out_shift", f["out_shift"]), ("act_min", lo), ("act_max", hi),
        ]
        layer.calls.append(f"ek_binary_ex_s8(&l{layer.index}_params, {self.ptr(a, layer)}, {self.ptr(b, layer)}, "
                           f"{self.ptr(y, layer)});")

    _sub = _squared_difference = _maximum = _minimum = _prelu = _binary_ex

    def _neg(self, op, layer):
        size = self.graph.tensors[op.outputs[0]].size
        layer.calls.append(f"ek_neg_f32({size}, {self.ptr(op.inputs[0], layer, 'float')}, "
                           f"{self.ptr(op.outputs[0], layer, 'float')});")

    def _copy(self, op, layer):
        """One strided copy per output (per input for PACK), each with its own parameter struct."""
        for n, (x, y, dims, in_s, out_s, in_off, out_off) in enumerate(copy_plans(op, self.graph)):
            dims, (in_s, out_s) = simplify(dims, in_s, out_s)
            fields = [("rank", len(dims)), ("dims", _c_list(_padded(dims))), ("in_strides", _c_list(_padded(in_s))),
                      ("out_strides", _c_list(_padded(out_s))), ("in_offset", in_off), ("out_offset", out_off)]
            name = f"l{layer.index}_copy{n}"
            layer.extra_structs.append(("ek_copy_params_t", name, fields))
            layer.calls.append(f"ek_copy_nd(&{name}, {self.ptr(x, layer)}, {self.ptr(y, layer)});")

    _transpose = _slice = _strided_slice = _split = _split_v = _unpack = _pack = _copy
    _depth_to_space = _space_to_depth = _copy

    def _gather(self, op, layer):
        t = self.graph.tensors
        shape = tuple(int(d) for d in t[op.inputs[0]].shape)
        axis = int(op.options.get("axis", 0)) % len(shape)
        indices = np.asarray(t[op.inputs[1]].data).reshape(-1).astype(np.int64) % shape[axis]
        layer.struct = "ek_gather_params_t"
        layer.fields = [("outer", int(np.prod(shape[:axis], dtype=np.int64))), ("axis", shape[axis]),
                        ("block", int(np.prod(shape[axis + 1:], dtype=np.int64))), ("count", indices.size),
                        ("indices", self.array(layer, "indices", indices, "int32"))]
        self.call(layer, "ek_gather_s8", op)

    def _resize(self, op, layer, bilinear: bool):
        n, in_h, in_w, c = (int(d) for d in self.graph.tensors[op.inputs[0]].shape)
        _, out_h, out_w, _ = (int(d) for d in self.graph.tensors[op.outputs[0]].shape)
        align = bool(op.options.get("align_corners", False))
        half = bool(op.options.get("half_pixel_centers", False))
        common = [("batches", n), ("in_h", in_h), ("in_w", in_w), ("out_h", out_h), ("out_w", out_w),
                  ("channels", c)]
        if bilinear:
            layer.struct = "ek_resize_bilinear_params_t"
            arrays = []
            for axis, (o, i) in (("y", (out_h, in_h)), ("x", (out_w, in_w))):
                lower, upper, pos = bilinear_axis(o, i, align, half)
                arrays += [(f"{axis}0", self.array(layer, f"{axis}0", np.array(lower), "int32")),
                           (f"{axis}1", self.array(layer, f"{axis}1", np.array(upper), "int32")),
                           (f"{axis}_pos", self.array(layer, f"{axis}_pos", np.array(pos), "int32"))]
            layer.fields = common + arrays
            self.call(layer, "ek_resize_bilinear_s8", op)
        else:
            layer.struct = "ek_resize_nearest_params_t"
            rows = self.array(layer, "rows", np.array(nearest_indices(out_h, in_h, align, half)), "int32")
            cols = self.array(layer, "cols", np.array(nearest_indices(out_w, in_w, align, half)), "int32")
            layer.fields = common + [("rows", rows), ("cols", cols)]
            self.call(layer, "ek_resize_nearest_s8", op)

    def _resize_nearest_neighbor(self, op, layer):
        self._resize(op, layer, bilinear=False)

    def _resize_bilinear(self, op, layer):
        self._resize(op, layer, bilinear=True)

    def _reduce(self, op, layer):
        from edgekit.codegen.native import quantize_multiplier

        kd, ks, rd, rs, count = reduce_layout(op, self.graph)
        (si, zi), (so, zo) = self.quant(op.inputs[0]), self.quant(op.outputs[0])
        mult = shift = 0
        if op.opcode in ("SUM", "MEAN"):
            mult, shift = quantize_multiplier(float(_f32(si)) / float(_f32(so)))
            if op.opcode == "MEAN":  # QuantizedMeanOrSum folds 1/count into the multiplier
                fold = min(count.bit_length() - 1, 32, 31 + shift)
                mult, shift = int((mult << fold) // count), shift - fold
        layer.struct = "ek_reduce_params_t"
        layer.fields = [("kind", REDUCE_OPS[op.opcode]), ("kept_rank", len(kd)), ("reduced_rank", len(rd)),
                        ("kept_dims", _c_list(_padded(kd))), ("kept_strides", _c_list(_padded(ks))),
                        ("reduced_dims", _c_list(_padded(rd))), ("reduced_strides", _c_list(_padded(rs))),
                        ("count", count), ("in_zp", zi), ("out_zp", zo), ("mult", mult), ("shift", shift)]
        self.call(layer, "ek_reduce_s8", op)

    _sum = _reduce_max = _reduce_min = _reduce

    def _batch_matmul(self, op, layer):
        from edgekit.codegen.native import quantize_multiplier

        t = self.graph.tensors
        lhs, rhs, y = op.inputs[0], op.inputs[1], op.outputs[0]
        ls, rs_, out = (tuple(int(d) for d in t[i].shape) for i in (lhs, rhs, y))
        adj_x, adj_y = bool(op.options.get("adj_x", False)), bool(op.options.get("adj_y", False))
        rows, depth = (ls[-1], ls[-2]) if adj_x else (ls[-2], ls[-1])
        cols = rs_[-2] if adj_y else rs_[-1]
        batch = out[:-2] or (1,)
        lb = broadcast_strides(batch, tuple(d for d in ls[:-2]) or (1,))
        rb = broadcast_strides(batch, tuple(d for d in rs_[:-2]) or (1,))
        lb = [s * rows * depth for s in lb]
        rb = [s * depth * cols for s in rb]
        bd, (lb, rb) = simplify(batch, lb, rb)
        (sl, zl), (sr, zr), (so, zo) = self.quant(lhs), self.quant(rhs), self.quant(y)
        mult, shift = quantize_multiplier(float(_f32(sl)) * float(_f32(sr)) / float(_f32(so)))
        layer.struct = "ek_batch_matmul_params_t"
        layer.fields = [
            ("batch_rank", len(bd)), ("batch_dims", _c_list(_padded(bd))),
            ("lhs_batch_strides", _c_list(_padded(lb))), ("rhs_batch_strides", _c_list(_padded(rb))),
            ("rows", rows), ("cols", cols), ("depth", depth),
            ("lhs_row_stride", 1 if adj_x else depth), ("lhs_depth_stride", rows if adj_x else 1),
            ("rhs_depth_stride", 1 if adj_y else cols), ("rhs_col_stride", depth if adj_y else 1),
            ("lhs_offset", -zl), ("rhs_offset", -zr), ("out_zp", zo), ("mult", mult), ("shift", shift),
            ("act_min", -128), ("act_max", 127),
        ]
        layer.calls.append(f"ek_batch_matmul_s8(&l{layer.index}_params, {self.ptr(lhs, layer)}, "
                           f"{self.ptr(rhs, layer)}, {self.ptr(y, layer)});")

    def _transpose_conv(self, op, layer):
        from edgekit.codegen.native import activation_range, quantize_multiplier

        t = self.graph.tensors
        w_t, x, y = t[op.inputs[1]], op.inputs[2], op.outputs[0]
        n, in_h, in_w, in_c = (int(d) for d in t[x].shape)
        _, out_h, out_w, out_c = (int(d) for d in t[y].shape)
        _, k_h, k_w, _ = (int(d) for d in w_t.shape)
        (si, zi), (so, zo) = self.quant(x), self.quant(y)
        scales = np.broadcast_to(w_t.scale.astype(np.float64), (out_c,))
        mult, shift = zip(*(quantize_multiplier(float(_f32(si)) * float(fs) / float(_f32(so))) for fs in scales))
        lo, hi = activation_range(op.options.get("fused_activation_function", "NONE"), so, zo)
        pad_top, pad_left = transpose_conv_padding(op, self.graph)
        has_bias = len(op.inputs) > 3 and op.inputs[3] >= 0
        layer.struct = "ek_transpose_conv_params_t"
        layer.fields = [
            ("batches", n), ("in_h", in_h), ("in_w", in_w), ("in_c", in_c), ("out_h", out_h), ("out_w", out_w),
            ("out_c", out_c), ("k_h", k_h), ("k_w", k_w), ("stride_h", op.options.get("stride_h", 1)),
            ("stride_w", op.options.get("stride_w", 1)), ("pad_top", pad_top), ("pad_left", pad_left),
            ("in_offset", -zi), ("out_zp", zo), ("act_min", lo), ("act_max", hi),
            # [out_c][k_h][k_w][in_c] -> [k_h][k_w][in_c][out_c]: the kernel's inner loop runs over output channels
            ("weights", self.array(layer, "weights", np.asarray(w_t.data).transpose(1, 2, 3, 0).reshape(-1),
                                   "int8")),
            ("bias", self.array(layer, "bias", np.asarray(t[op.inputs[3]].data).reshape(-1), "int32")
             if has_bias else "NULL"),
            ("mult", self.array(layer, "mult", np.array(mult), "int32")),
            ("shift", self.array(layer, "shift", np.array(shift), "int8")),
        ]
        layer.calls.append(f"ek_transpose_conv_s8(&l{layer.index}_params, {self.ptr(x, layer)}, "
                           f"{self.ptr(y, layer)});")
