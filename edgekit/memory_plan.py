"""Static activation memory plan: every activation tensor gets an offset in one arena, from its lifetime.

The same plan serves `analyze` (its peak is the activation RAM a model needs) and the native backend (its offsets
are compiled into the C code, and its peak is the arena size). Tensors whose lifetimes do not overlap share bytes.

Placement is greedy: each tensor at the lowest offset where it overlaps no tensor already placed that is alive at
the same time, the approach of TFLite Micro's GreedyMemoryPlanner (largest first), also tried in other orders
with the smallest peak kept.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from edgekit.tflite_model import Graph

ALIGNMENT = 16

# Ops whose output is the input's bytes seen with another shape: the output aliases the input (no copy, no RAM).
VIEW_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})


@dataclass
class Buffer:
    tensor: int  # index of the tensor that owns the bytes (aliases point at it)
    size: int
    first: int  # index of the first operator that writes or reads it (-1: a graph input, alive from the start)
    last: int  # index of the last operator that reads it (len(ops): a graph output, alive to the end)
    offset: int = 0


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    aliases: dict[int, int] = field(default_factory=dict)  # view tensor -> tensor whose bytes it uses
    num_operators: int = 0

    @property
    def peak_bytes(self) -> int:
        return max((b.offset + b.size for b in self.buffers), default=0)

    def offset_of(self, tensor: int) -> int:
        owner = self.aliases.get(tensor, tensor)
        if "_by_tensor" not in self.__dict__:  # indexed once: the native backend asks for every tensor
            self.__dict__["_by_tensor"] = {b.tensor: b for b in self.buffers}
        buffer = self.__dict__["_by_tensor"].get(owner)
        if buffer is None:
            raise KeyError(f"tensor {tensor} is not an activation of this plan")
        return buffer.offset

    def live_bytes_per_operator(self) -> list[int]:
        """Bytes alive while each operator runs (what a picture of the plan shows over time)."""
        return _live_bytes(self.buffers, 0, self.num_operators - 1)

    def to_dict(self) -> dict:
        return {
            "peak_bytes": self.peak_bytes,
            "alignment": ALIGNMENT,
            "buffers": [{"tensor": b.tensor, "offset": b.offset, "size": b.size, "first_op": b.first,
                         "last_op": b.last} for b in sorted(self.buffers, key=lambda b: b.offset)],
            "aliases": {str(k): v for k, v in self.aliases.items()},
        }


def _live_bytes(buffers: list[Buffer], start: int, end: int) -> list[int]:
    """Bytes alive at each time step start..end, by a sweep over lifetimes (linear, not buffers x steps)."""
    if end < start:
        return []
    delta = [0] * (end - start + 2)
    for b in buffers:
        low, high = max(b.first, start), min(b.last, end)
        if low <= high:
            delta[low - start] += b.size
            delta[high - start + 1] -= b.size
    alive, total = [], 0
    for change in delta[:-1]:
        total += change
        alive.append(total)
    return alive


def _neighbours(buffers: list[Buffer]) -> dict[int, list[Buffer]]:
    """id(buffer) -> the buffers whose lifetimes overlap it, by a sweep in order of first use: the cost is the
    number of overlapping pairs (what placement must look at anyway), not buffers squared."""
    result: dict[int, list[Buffer]] = {id(b): [] for b in buffers}
    active: list[tuple[int, int, Buffer]] = []  # heap of (last, tie, buffer) alive at the current start
    for tie, b in enumerate(sorted(buffers, key=lambda b: (b.first, b.last))):
        while active and active[0][0] < b.first:
            heapq.heappop(active)
        for _, _, other in active:
            result[id(b)].append(other)
            result[id(other)].append(b)
        heapq.heappush(active, (b.last, tie, b))
    return result


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


# Orders in which `place` considers the buffers. Largest first is TFLite Micro's order; in order of first use
# sometimes packs a chain of layers tighter (MobileNet's VWW: 54 KiB instead of 63 KiB, the lower bound).
PLACEMENT_ORDERS = (
    lambda b: (-b.size, b.first, b.tensor),  # largest first
    lambda b: (-b.size * (b.last - b.first + 1), b.first, b.tensor),  # largest size x lifetime first
    lambda b: (b.first, -b.size, b.tensor),  # in order of first use
)


def place(buffers: list[Buffer]) -> None:
    """Assign offsets in place: the lowest peak of greedy placements in PLACEMENT_ORDERS (earlier orders win ties,
    so a plan is stable), each buffer at the lowest offset free over its lifetime.

    No plan goes below the bytes alive at the busiest operator: stop as soon as an order reaches that.
    """
    if not buffers:
        return
    lower_bound = max(_live_bytes(buffers, min(b.first for b in buffers), max(b.last for b in buffers)))
    neighbours = _neighbours(buffers)
    best = None
    for key in PLACEMENT_ORDERS:
        peak = _place_greedy(buffers, sorted(buffers, key=key), {}, mirrored=False, neighbours=neighbours)
        if best is None or peak < best[0]:
            best = (peak, [b.offset for b in buffers])
        if peak <= lower_bound:
            break
    for b, offset in zip(buffers, best[1]):
        b.offset = offset


def _forbidden(buf: Buffer, p: Buffer, overlaps: dict[tuple[int, int], int], mirrored: bool) -> tuple[int, int]:
    """Open interval of start positions for `buf` that collide with the placed buffer `p`.

    Positions count from the bottom of the arena, or from its top when `mirrored`. An entry (input, output) -> d of
    `overlaps` lets that output start up to d bytes below the input it overwrites, instead of beside it.
    """
    if mirrored:
        d = overlaps.get((p.tensor, buf.tensor))
        if d is not None:  # p is the input, buf the output written over it
            return p.offset - buf.size, p.offset + p.size + d - buf.size
        d = overlaps.get((buf.tensor, p.tensor))
        if d is not None:  # buf is the input, p the output written over it
            return p.offset + p.size - buf.size - d, p.offset + p.size
        return p.offset - buf.size, p.offset + p.size
    d = overlaps.get((p.tensor, buf.tensor))
    if d is not None:
        return p.offset - d, p.offset + p.size
    d = overlaps.get((buf.tensor, p.tensor))
    if d is not None:
        return p.offset - buf.size, p.offset + d
    return p.offset - buf.size, p.offset + p.size


def _place_greedy(buffers: list[Buffer], order: list[Buffer], overlaps: dict[tuple[int, int], int], *,
                  mirrored: bool, neighbours: dict[int, list[Buffer]]) -> int:
    """Place `order` one by one at the lowest free position; returns the peak. Mirrored fills from the top.
    `neighbours` (from _neighbours) lists the buffers alive at the same time as each buffer."""
    placed: set[int] = set()
    for buf in order:
        intervals = sorted(_forbidden(buf, p, overlaps, mirrored) for p in neighbours[id(buf)] if id(p) in placed)
        offset = 0
        for low, high in intervals:
            if offset <= low:
                break
            if offset < high:
                offset = _align(high)
        buf.offset = offset
        placed.add(id(buf))
    peak = max((b.offset + b.size for b in buffers), default=0)
    if mirrored:  # positions were counted from the top: turn them into offsets from the bottom
        for b in buffers:
            b.offset = peak - b.offset - b.size
    return peak


def place_in_place(buffers: list[Buffer], overlaps: dict[tuple[int, int], int]) -> None:
    """Like `place`, but an output may overlap an input that dies where it is written (in-place-aware planning).

    Outputs tend to drift downwards below their inputs, so each order of PLACEMENT_ORDERS is tried filling the
    arena from the bottom and from the top; the smallest peak wins (earlier tries win ties).
    """
    orders = [sorted(buffers, key=key) for key in PLACEMENT_ORDERS]
    neighbours = _neighbours(buffers)
    best = None
    for mirrored in (False, True):
        for order in orders:
            peak = _place_greedy(buffers, order, overlaps, mirrored=mirrored, neighbours=neighbours)
            if best is None or peak < best[0]:
                best = (peak, [b.offset for b in buffers])
    for b, offset in zip(buffers, best[1]):
        b.offset = offset


def plan_activations(graph: Graph, *, alias_views: bool = True, overlaps: dict[tuple[int, int], int] | None = None,
                     keep_inputs: bool = False) -> MemoryPlan:
    """Plan every non-constant tensor of the graph (graph inputs and outputs included).

    `overlaps` (input tensor, output tensor) -> d: the operator writing that output reads its input far enough
    ahead that the output may start d bytes below the input when the input dies there (the native backend
    computes d per kernel). Pairs whose input lives on are ignored. `keep_inputs` keeps the graph inputs alive to
    the end (a caller may run the model again on the same input).
    """
    n_ops = len(graph.operators)
    aliases: dict[int, int] = {}
    if alias_views:
        for op in graph.operators:
            source = op.inputs[0] if op.inputs else -1
            if op.opcode in VIEW_OPS and source >= 0 and not graph.tensors[source].is_constant:
                aliases[op.outputs[0]] = aliases.get(source, source)

    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(tensor: int, when: int) -> None:
        owner = aliases.get(tensor, tensor)
        first[owner] = min(first.get(owner, when), when)
        last[owner] = max(last.get(owner, when), when)

    for i in graph.inputs:
        touch(i, -1)
    for op in graph.operators:
        for t in op.inputs + op.outputs:
            if t >= 0 and not graph.tensors[t].is_constant:
                touch(t, op.index)
    for o in graph.outputs:
        touch(o, n_ops)
    if keep_inputs:
        for i in graph.inputs:
            touch(i, n_ops)

    buffers = [Buffer(tensor=t, size=_align(graph.tensors[t].nbytes), first=first[t], last=last[t]) for t in first]
    if overlaps:
        valid = {}
        for (source, target), d in overlaps.items():
            source, target = aliases.get(source, source), aliases.get(target, target)
            if source in last and target in first and source != target and last[source] == first[target]:
                valid[(source, target)] = _align(max(int(d), 0))
        place_in_place(buffers, valid)
    else:
        place(buffers)
    return MemoryPlan(buffers=buffers, aliases=aliases, num_operators=n_ops)
