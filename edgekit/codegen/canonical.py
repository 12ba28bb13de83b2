"""Graph canonicalization before native codegen: converter noise folded away, so it never blocks a model.

Models converted with a dynamic batch compute their reshape targets at run time (SHAPE -> STRIDED_SLICE -> PACK
-> RESHAPE around a Flatten), although every shape is static at batch 1; converters also leave identity ops and
chains of reshapes. `canonicalize` returns an equivalent graph (same tensors, same bytes out) where:

- a RESHAPE takes its shape from its output tensor (static at batch 1), not from a computed tensor;
- integer computations on constants (shape arithmetic) are folded into constants;
- ops that keep the bytes in order (a TRANSPOSE moving only size-1 axes, a full SLICE, a zero PAD, a
  one-input CONCATENATION or PACK, a one-output SPLIT, an int8 QUANTIZE that changes nothing) become views;
- a view of a view reads the first view's source; a view that changes nothing is dropped;
- ops whose outputs nobody reads are removed.

Views (RESHAPE, SQUEEZE, EXPAND_DIMS) of any rank alias their input in the memory plan: no copy, no RAM. The
notes say what was done, for the build report. The model's bytes (and hash) are those of the original file.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import numpy as np

from edgekit.tflite_model import Graph, Operator

VIEWS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
_FOLDABLE = frozenset({"SHAPE", "STRIDED_SLICE", "SLICE", "PACK", "CONCATENATION", "GATHER", "RESHAPE", "SQUEEZE",
                       "EXPAND_DIMS", "CAST", "ADD", "SUB", "MUL", "FLOOR_DIV", "REDUCE_PROD", "FILL"})
_INTEGER = ("int32", "int64")


@dataclass
class Canonical:
    graph: Graph
    notes: list[str]
    origins: list[int]  # the original graph's index of each operator of `graph`


def _same_quantization(graph: Graph, a: int, b: int) -> bool:
    ta, tb = graph.tensors[a], graph.tensors[b]
    return (ta.dtype == tb.dtype and np.array_equal(ta.scale, tb.scale)
            and np.array_equal(ta.zero_point, tb.zero_point))


def _fold(op: Operator, graph: Graph, tensors) -> np.ndarray | None:
    """The value of an integer op whose inputs are all known, computed as TFLite does; None if not foldable."""
    code = op.opcode
    if code not in _FOLDABLE or len(op.outputs) != 1 or tensors[op.outputs[0]].dtype not in _INTEGER:
        return None
    if code == "SHAPE":
        shape = tensors[op.inputs[0]].shape
        return np.array(shape, dtype=tensors[op.outputs[0]].dtype) if all(d > 0 for d in shape) else None
    values = []
    for i in op.inputs:
        if i < 0:
            values.append(None)
            continue
        if tensors[i].data is None:
            return None
        values.append(np.asarray(tensors[i].data).reshape(tensors[i].shape))  # a scalar's data is stored 1-D
    x = values[0]
    o = op.options
    if code == "STRIDED_SLICE":
        from edgekit.codegen.native_ops import strided_slice_ranges

        fake = dataclasses.replace(graph, tensors=tensors)
        ranges = strided_slice_ranges(op, fake)
        if ranges is None:
            return None
        return x[np.ix_(*[np.array(r, dtype=np.int64) for r in ranges])] if x.ndim else x
    if code == "SLICE":
        begin, size = values[1].reshape(-1), values[2].reshape(-1)
        return x[tuple(slice(int(b), None if int(s) < 0 else int(b) + int(s)) for b, s in zip(begin, size))]
    if code == "PACK":
        return np.stack(values, axis=int(o.get("axis", 0)))
    if code == "CONCATENATION":
        return np.concatenate([v.reshape(v.shape or (1,)) for v in values], axis=int(o.get("axis", 0)))
    if code == "GATHER":
        return np.take(x, values[1].astype(np.int64), axis=int(o.get("axis", 0)))
    if code in VIEWS or code == "CAST":
        return x
    if code in ("ADD", "SUB", "MUL", "FLOOR_DIV"):
        if o.get("fused_activation_function", "NONE") != "NONE":
            return None
        a, b = values[0].astype(np.int64), values[1].astype(np.int64)
        if code == "FLOOR_DIV" and np.any(b == 0):
            return None
        return {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "FLOOR_DIV": np.floor_divide}[code](a, b)
    if code == "REDUCE_PROD":
        axes = tuple(int(a) % max(x.ndim, 1) for a in values[1].reshape(-1))
        return np.prod(x.astype(np.int64), axis=axes, keepdims=bool(o.get("keep_dims", False)))
    if code == "FILL":
        return np.full([int(d) for d in x.reshape(-1)], values[1].reshape(-1)[0])
    return None


def _keeps_order(op: Operator, graph: Graph) -> bool:
    """Whether an op's output is its input's bytes in the same order (then it is a view)."""
    t = graph.tensors
    code = op.opcode
    if len(op.outputs) != 1 or not op.inputs or op.inputs[0 if code != "SPLIT" else 1] < 0:
        return False
    x = op.inputs[1] if code == "SPLIT" else op.inputs[0]
    y = op.outputs[0]
    if t[x].size != t[y].size or not _same_quantization(graph, x, y) or t[x].dtype != t[y].dtype:
        return False
    if code == "TRANSPOSE":
        perm = t[op.inputs[1]].data
        if perm is None:
            return False
        moved = [int(p) for p in np.asarray(perm).reshape(-1) if t[x].shape[int(p)] != 1]
        return moved == sorted(moved)
    if code == "SPLIT":
        return t[op.inputs[0]].data is not None
    if code == "STRIDED_SLICE":
        from edgekit.codegen.native_ops import strided_slice_ranges

        if any(i < 0 or t[i].data is None for i in op.inputs[1:4]):
            return False
        ranges = strided_slice_ranges(op, graph)
        return ranges is not None and all(len(r) <= 1 or r.step == 1 for r in ranges)
    if code in ("SLICE", "PAD", "PADV2", "SPLIT_V"):
        return all(i < 0 or t[i].data is not None for i in op.inputs[1:])  # same size: it takes everything
    if code in ("CONCATENATION", "PACK"):
        return len(op.inputs) == 1
    if code == "QUANTIZE":
        return t[x].dtype == "int8"
    return False


def canonicalize(graph: Graph) -> Canonical:
    """The canonical form of a graph (module docstring) and one note per kind of change."""
    tensors = list(graph.tensors)
    ops = [dataclasses.replace(op, inputs=list(op.inputs), outputs=list(op.outputs)) for op in graph.operators]
    outputs = list(graph.outputs)
    counts: Counter = Counter()

    for op in ops:
        if op.opcode == "RESHAPE" and len(op.inputs) > 1:
            shape_input = op.inputs[1]
            op.inputs = op.inputs[:1]
            if tensors[shape_input].data is None:
                counts["computed reshape target{s} taken from the static output shape"] += 1

    folded: Counter = Counter()
    alive = []
    for op in ops:
        value = _fold(op, graph, tensors)
        out = op.outputs[0] if op.outputs else -1
        if value is not None and out not in outputs and value.size == tensors[out].size:
            t = tensors[out]
            tensors[out] = dataclasses.replace(t, data=value.astype(t.dtype).reshape(t.shape))
            folded[op.opcode] += 1
            continue
        alive.append(op)
    ops = alive
    if folded:
        counts[f"constant op{{s}} folded ({', '.join(f'{n} {c}' for c, n in sorted(folded.items()))})"] += sum(
            folded.values())

    for op in ops:
        if op.opcode not in VIEWS and _keeps_order(op, graph):
            counts[f"{op.opcode}{{s}} rewritten as a view"] += 1
            source = op.inputs[1] if op.opcode == "SPLIT" else op.inputs[0]
            op.opcode, op.inputs, op.options = "RESHAPE", [source], {}

    producer = {o: op for op in ops for o in op.outputs}
    for op in ops:  # a view of a view reads the first view's source
        if op.opcode in VIEWS:
            source = producer.get(op.inputs[0])
            while source is not None and source.opcode in VIEWS and source.inputs[0] >= 0:
                op.inputs = [source.inputs[0]]
                counts["reshape chain{s} fused"] += 1
                source = producer.get(op.inputs[0])

    replaced: dict[int, int] = {}
    alive = []
    for op in ops:  # views that change nothing
        x = op.inputs[0] if op.inputs else -1
        if (op.opcode in VIEWS and x >= 0 and op.outputs[0] not in outputs and tensors[x].shape ==
                tensors[op.outputs[0]].shape and not tensors[x].is_constant):
            replaced[op.outputs[0]] = replaced.get(x, x)
            counts[f"identity {op.opcode}{{s}} dropped"] += 1
            continue
        op.inputs = [replaced.get(i, i) for i in op.inputs]
        alive.append(op)
    ops = alive

    needed = set(outputs)
    alive = []
    for op in reversed(ops):  # dead code: outputs nobody reads
        if any(o in needed for o in op.outputs):
            alive.append(op)
            needed.update(i for i in op.inputs if i >= 0)
        else:
            counts["unused op{s} removed"] += 1
    origins = [op.index for op in reversed(alive)]  # still the original indices (dataclasses.replace kept them)
    ops = [dataclasses.replace(op, index=n) for n, op in enumerate(reversed(alive))]

    if not counts:
        return Canonical(graph, [], list(range(len(graph.operators))))
    notes = [f"{n} {what.format(s='' if n == 1 else 's')}" for what, n in counts.items()]
    return Canonical(dataclasses.replace(graph, tensors=tensors, operators=ops, outputs=outputs), notes, origins)
