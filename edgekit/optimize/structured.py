"""Structured pruning: remove whole filters/units and rebuild a smaller Keras model.

Unlike zeroing weights, removing a Conv2D filter removes its output channel, so the next layer's kernel loses
an input slice too: MACs, flash and activation RAM all drop. Channels are tracked through the graph:

- Conv2D / Conv1D / Dense (groups 1, channels last) create channels ("groups" of prunable channels);
- BatchNormalization, activations, pooling, padding, dropout, DepthwiseConv2D (multiplier 1) pass them through;
- Flatten tiles them (a Dense after it loses one row per removed channel per spatial position);
- Add/Subtract/Multiply/... tie channel i of every input together (a residual keeps its channels aligned);
- Concatenate lays its inputs' channels side by side;
- anything else (Reshape, Softmax, custom layers, model outputs) is a barrier: channels reaching it are kept.

Channels tied together form one class and are removed together; a ratio removes that fraction of the classes
of every prunable unit (producers tied by residuals form one unit), ranked by the BatchNorm |gamma| that
follows a producer (when there is one) or else by the L1 norm of its filters.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.optimize.graph import ModelGraph, Node, build_model, read_graph

PRODUCERS = {"Conv1D", "Conv2D", "Dense"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
PASSTHROUGH = {
    "BatchNormalization", "Activation", "ReLU", "ELU", "LeakyReLU", "PReLU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "MaxPooling1D", "MaxPooling2D",
    "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
    "UpSampling1D", "UpSampling2D", "Identity", "ActivityRegularization",
}
TIED = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
CHANNEL_MIXING_ACTIVATIONS = {"softmax", "log_softmax"}


class _Channels:
    """Union-find over channels (group, index); groups are merged into units when channels are tied."""

    def __init__(self):
        self.parent = {}
        self.group_parent = {}
        self.sizes = {}
        self.protected = set()

    def new_group(self, name: str, size: int) -> list:
        self.sizes[name] = size
        self.group_parent[name] = name
        ids = [(name, i) for i in range(size)]
        for cid in ids:
            self.parent[cid] = cid
        return ids

    def find(self, cid):
        while self.parent[cid] != cid:
            self.parent[cid] = self.parent[self.parent[cid]]
            cid = self.parent[cid]
        return cid

    def unit(self, group):
        while self.group_parent[group] != group:
            group = self.group_parent[group]
        return group

    def tie(self, a, b):
        if a is None or b is None:
            self.protect([a, b])
            return
        self.parent[self.find(a)] = self.find(b)
        ua, ub = self.unit(a[0]), self.unit(b[0])
        if ua != ub:
            self.group_parent[ua] = ub

    def protect(self, ids):
        for cid in ids:
            if cid is not None:
                self.protected.add(cid[0])


def _channels_last(node: Node) -> bool:
    return node.config.get("data_format", "channels_last") == "channels_last"


def _is_barrier(node: Node, rank: int) -> bool:
    cls, cfg = node.class_name, node.config
    if cls in ("Activation",) and cfg.get("activation") in CHANNEL_MIXING_ACTIVATIONS:
        return True
    if cls in PRODUCERS:
        return not _channels_last(node) or cfg.get("groups", 1) != 1
    if cls in DEPTHWISE:
        return not _channels_last(node) or cfg.get("depth_multiplier", 1) != 1
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        return axis not in (-1, rank - 1)
    if cls in PASSTHROUGH:
        return not _channels_last(node)
    if cls == "Concatenate":
        return cfg.get("axis", -1) not in (-1, rank - 1)
    return cls not in TIED and cls != "Flatten"


def _output_channels(node: Node) -> int:
    return int(node.layer.output.shape[-1]) if node.layer is not None else int(node.input_shape[-1])


def _rank(node: Node) -> int:
    return len(node.layer.output.shape) if node.layer is not None else len(node.input_shape) + 1


def trace_channels(graph: ModelGraph):
    """Channel ids of every node's output (None for channels nothing may remove), and the union-find."""
    ch = _Channels()
    cmap = {}
    for node in graph.nodes:
        if node.class_name == "InputLayer":
            cmap[node.name] = [None] * int(node.input_shape[-1])
            continue
        ins = [cmap[i] for i in node.inputs]
        in_rank = len(node.layer.input.shape) if len(ins) == 1 else _rank(node)
        out_channels = _output_channels(node)
        if _is_barrier(node, in_rank):
            for ids in ins:
                ch.protect(ids)
            cmap[node.name] = [None] * out_channels
        elif node.class_name in PRODUCERS:
            cmap[node.name] = ch.new_group(node.name, out_channels)
        elif node.class_name in TIED:
            if any(len(ids) != len(ins[0]) for ids in ins):  # broadcasting: keep everything
                for ids in ins:
                    ch.protect(ids)
                cmap[node.name] = [None] * out_channels
                continue
            for ids in ins[1:]:
                for a, b in zip(ins[0], ids):
                    ch.tie(a, b)
            cmap[node.name] = list(ins[0])
        elif node.class_name == "Concatenate":
            cmap[node.name] = [cid for ids in ins for cid in ids]
        elif node.class_name == "Flatten":
            spatial = int(np.prod(node.layer.input.shape[1:-1])) if in_rank > 2 else 1
            cmap[node.name] = list(ins[0]) * spatial  # flattened index = position * channels + channel
        else:  # passthrough and depthwise (multiplier 1)
            cmap[node.name] = list(ins[0])
        if len(cmap[node.name]) != out_channels:
            raise EdgekitError(f"cannot follow the channels of layer {node.name!r} ({node.class_name}); "
                               f"expected {out_channels} channels")
    for name in graph.outputs:
        ch.protect(cmap[name])
    return cmap, ch


def _importance(graph: ModelGraph, group: str, criterion: str) -> np.ndarray:
    """Per-channel importance of a producer's output, normalized to mean 1 so tied groups add up fairly."""
    node = graph.node(group)
    consumers = graph.consumers(group)
    values = None
    if criterion in ("auto", "bn") and len(consumers) == 1 and consumers[0].class_name == "BatchNormalization" \
            and consumers[0].config.get("scale", True):
        values = np.abs(consumers[0].weights[0])
    if values is None:
        if criterion == "bn":
            raise EdgekitError(f"criterion 'bn' needs a BatchNormalization after layer {group!r}; use 'l1' or "
                               f"'auto'")
        kernel = node.weights[0]
        values = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    values = values.astype(np.float64)
    mean = values.mean()
    return values / mean if mean > 0 else np.ones_like(values)


def plan_removal(graph: ModelGraph, ratio: float, criterion: str = "auto"):
    """Which channel classes go: (cmap, channels, removed roots, per-unit report rows)."""
    cmap, ch = trace_channels(graph)
    units = {}
    for group in ch.sizes:
        units.setdefault(ch.unit(group), []).append(group)
    protected_units = {ch.unit(g) for g in ch.protected}
    removed = set()
    rows = []
    for unit, groups in units.items():
        classes = {}
        for group in groups:
            scores = _importance(graph, group, criterion)
            for i in range(ch.sizes[group]):
                root = ch.find((group, i))
                classes[root] = classes.get(root, 0.0) + scores[i]
        n = len(classes)
        if unit in protected_units:
            rows.append({"layers": sorted(groups), "channels": n, "kept": n, "note": "kept (feeds an output or "
                                                                                       "a layer that mixes channels)"})
            continue
        drop = min(int(np.floor(ratio * n)), n - 1)
        roots = list(classes)
        order = np.argsort(np.array([classes[r] for r in roots]), kind="stable")
        removed.update(roots[i] for i in order[:drop])
        rows.append({"layers": sorted(groups), "channels": n, "kept": n - drop, "note": ""})
    return cmap, ch, removed, rows


def structured_prune(model, ratio: float, criterion: str = "auto"):
    """A new Keras 3 model with `ratio` of the channels of every prunable unit removed; and the per-unit rows.

    With ratio 0 the rebuilt model computes exactly what the original does.
    """
    if not 0 <= ratio < 1:
        raise EdgekitError(f"structured pruning ratio must be in [0, 1), got {ratio}")
    graph = read_graph(model)
    cmap, ch, removed, rows = plan_removal(graph, ratio, criterion)

    def kept(ids):
        return np.array([i for i, cid in enumerate(ids) if cid is None or ch.find(cid) not in removed], dtype=int)

    for node in graph.nodes:
        if node.class_name == "InputLayer" or not node.weights:
            continue
        keep_in = kept(cmap[node.inputs[0]]) if node.inputs else None
        w = node.weights
        if node.class_name in PRODUCERS and node.config.get("groups", 1) == 1 and _channels_last(node):
            keep_out = kept(cmap[node.name])
            w[0] = np.take(np.take(w[0], keep_in, axis=-2), keep_out, axis=-1)
            if len(w) > 1:
                w[1] = w[1][keep_out]
            node.config["units" if node.class_name == "Dense" else "filters"] = int(len(keep_out))
        elif node.class_name in DEPTHWISE and len(keep_in) != w[0].shape[-2]:  # multiplier 1: in == out
            w[0] = np.take(w[0], keep_in, axis=-2)
            if len(w) > 1:
                w[1] = w[1][keep_in]
        elif node.class_name in ("BatchNormalization", "PReLU"):
            n_in = len(cmap[node.inputs[0]])
            node.weights = [np.take(a, keep_in, axis=-1) if a.shape and a.shape[-1] == n_in else a for a in w]
    pruned = build_model(graph, name=graph.name)
    return pruned, rows
