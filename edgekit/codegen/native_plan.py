"""How far each native kernel reads ahead of what it writes: the input an output may overwrite (in-place planning).

A kernel of templates/native/ek_kernels.c writes output element o (in raster order) after reading everything it
needs for o. If the output starts d bytes below the input, writing o clobbers input byte o - d. That is safe when
no later output element still needs that byte, i.e. when o - d < first(o + 1) for every o, where first(k) is the
lowest input index read by output elements k, k+1, ... So the smallest safe d is max over o of o + 1 - first(o+1).

For a 3x3 stride-1 SAME convolution over a W x C raster this is about (W + 1) * C bytes: the output starts a row
and a pixel before its input, instead of needing a separate buffer (TinyEngine and MCUNet plan this way).
"""

from __future__ import annotations

import numpy as np

from edgekit.tflite_model import Graph, Operator

# element i read before element i is written: the output may start where its input does
_ELEMENTWISE = frozenset({"LOGISTIC", "TANH", "LEAKY_RELU", "HARD_SWISH", "RELU", "RELU6", "RSQRT", "NEG"})
_BINARY = frozenset({"ADD", "MUL", "SUB", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "PRELU"})


def _shape4(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in shape)
    return (1,) * (4 - len(shape)) + shape


def _read_ahead(first_read: np.ndarray, channels: int) -> int:
    """d for outputs grouped in runs of `channels` elements that all read from first_read[p] upwards."""
    first_read = np.asarray(first_read, dtype=np.int64)
    if first_read.size == 0:
        return 0
    # lowest input index still needed by groups p, p+1, ...
    suffix = np.minimum.accumulate(first_read[::-1])[::-1]
    p = np.arange(first_read.size, dtype=np.int64)
    need = []
    if channels >= 2:  # writing element (p, c < C-1): group p still reads from first_read[p]
        need.append(p * channels + channels - 1 - suffix)
    if first_read.size > 1:  # writing the last element of group p: groups p+1... remain
        need.append((p[1:]) * channels - suffix[1:])
    return int(max([0] + [int(n.max()) for n in need]))


def _window_first_reads(op: Operator, graph: Graph) -> tuple[np.ndarray, int] | None:
    """first_read per output pixel of a convolution or pooling, and the output channels."""
    from edgekit.codegen.native import padding_for

    t_in, t_out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    n, in_h, in_w, in_c = _shape4(t_in.shape)
    _, out_h, out_w, out_c = _shape4(t_out.shape)
    if n != 1:
        return None
    pad_top, pad_left = padding_for(op, graph)[:2]
    oy = np.arange(out_h, dtype=np.int64) * int(op.options.get("stride_h", 1)) - pad_top
    ox = np.arange(out_w, dtype=np.int64) * int(op.options.get("stride_w", 1)) - pad_left
    rows = np.clip(oy, 0, in_h - 1)[:, None]
    cols = np.clip(ox, 0, in_w - 1)[None, :]
    return ((rows * in_w + cols) * in_c).reshape(-1), out_c


def overlap_hints(graph: Graph) -> dict[tuple[int, int], int]:
    """(input tensor, output tensor) -> bytes the output may start below that input (see module docstring)."""
    hints: dict[tuple[int, int], int] = {}
    for op in graph.operators:
        if not op.outputs or not op.inputs or op.inputs[0] < 0:
            continue
        out = graph.tensors[op.outputs[0]]
        if out.dtype != "int8" and op.opcode != "NEG":
            continue
        source = graph.tensors[op.inputs[0]]
        code = op.opcode
        d = None
        if code in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
            window = _window_first_reads(op, graph)
            if window is not None:
                d = _read_ahead(*window)
        elif code == "FULLY_CONNECTED":
            in_n = int(graph.tensors[op.inputs[1]].shape[-1])
            out_n = int(graph.tensors[op.inputs[1]].shape[0])
            batches = source.size // in_n
            d = _read_ahead(np.arange(batches) * in_n, out_n)
        elif code == "SOFTMAX":
            depth = int(source.shape[-1]) if source.shape else 1
            d = _read_ahead(np.arange(source.size // depth) * depth, depth)
        elif code in _ELEMENTWISE or (code == "QUANTIZE" and source.dtype == "int8"):
            d = 0
        elif code in _BINARY:
            for t in op.inputs[:2]:
                if t >= 0 and not graph.tensors[t].is_constant and graph.tensors[t].shape == out.shape:
                    hints[(t, op.outputs[0])] = 0
            continue
        elif code == "MEAN":
            from edgekit.codegen.native import mean_layout

            layout = mean_layout(op, graph)
            if layout is not None:
                outer, reduce, inner = layout
                first = (np.arange(outer)[:, None] * reduce * inner + np.arange(inner)[None, :]).reshape(-1)
                d = _read_ahead(first, 1)
        elif code in ("PAD", "PADV2"):
            from edgekit.codegen.native import pad_layout

            in_dims, out_dims, before = pad_layout(op, graph)
            grids = np.meshgrid(*[np.arange(n) - b for n, b in zip(out_dims, before)], indexing="ij")
            inside = np.ones(grids[0].shape, dtype=bool)
            index = np.zeros(grids[0].shape, dtype=np.int64)
            for g, n in zip(grids, in_dims):
                inside &= (g >= 0) & (g < n)
                index = index * n + g
            first = np.where(inside, index, np.iinfo(np.int64).max).reshape(-1)
            d = _read_ahead(first, 1)
        if d is not None and not source.is_constant:
            hints[(op.inputs[0], op.outputs[0])] = d
    return hints
