"""Low-rank factorization: a Dense (or 1x1 Conv2D) kernel W (in x out) becomes two layers, in->r->out.

From the truncated SVD W ~ U_r S_r V_r^T: the first layer (no bias, linear) holds U_r S_r, the second keeps the
original name, bias and activation and holds V_r^T. r is the smallest rank keeping `energy` of the squared
singular values; a layer is factorized only when r (in + out) < in x out, i.e. when it lowers MACs and
parameters. Needs no data (fine-tuning afterwards recovers what the truncation lost).
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.optimize.graph import Node, build_model, read_graph


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    power = singular_values.astype(np.float64) ** 2
    cumulative = np.cumsum(power) / power.sum()
    return int(np.searchsorted(cumulative, energy - 1e-12) + 1)


def _factorizable(node: Node) -> bool:
    if node.class_name == "Dense":
        return True
    if node.class_name != "Conv2D":
        return False
    cfg = node.config
    return tuple(cfg.get("kernel_size", ())) == (1, 1) and cfg.get("groups", 1) == 1 \
        and tuple(cfg.get("dilation_rate", (1, 1))) == (1, 1) and cfg.get("data_format", "channels_last") == \
        "channels_last"


def low_rank(model, energy: float = 0.9):
    """A new Keras 3 model with the factorizable layers replaced where it pays; and a row per layer considered."""
    if not 0 < energy <= 1:
        raise EdgekitError(f"low-rank energy must be in (0, 1], got {energy}")
    graph = read_graph(model)
    names = {n.name for n in graph.nodes}
    rows, nodes = [], []
    for node in graph.nodes:
        if not _factorizable(node) or not node.weights:
            nodes.append(node)
            continue
        kernel = node.weights[0]
        n_in, n_out = kernel.shape[-2], kernel.shape[-1]
        matrix = kernel.reshape(n_in, n_out).astype(np.float64)
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        rank = rank_for_energy(s, energy)
        pays = rank * (n_in + n_out) < n_in * n_out
        rows.append({"layer": node.name, "shape": [int(n_in), int(n_out)], "rank": rank,
                     "factorized": bool(pays)})
        if not pays:
            nodes.append(node)
            continue
        first_name = _unique(f"{node.name}_lowrank", names)
        first_kernel = (u[:, :rank] * s[:rank]).astype(kernel.dtype)
        second_kernel = vt[:rank].astype(kernel.dtype)
        if node.class_name == "Dense":
            first_cfg = {"name": first_name, "units": rank, "use_bias": False, "activation": "linear"}
        else:
            first_cfg = {"name": first_name, "filters": rank, "kernel_size": (1, 1),
                         "strides": tuple(node.config.get("strides", (1, 1))),
                         "padding": node.config.get("padding", "valid"), "use_bias": False,
                         "activation": "linear"}
            first_kernel = first_kernel.reshape(1, 1, n_in, rank)
            second_kernel = second_kernel.reshape(1, 1, rank, n_out)
            node.config = dict(node.config, strides=(1, 1), padding="valid")
        nodes.append(Node(first_name, node.class_name, first_cfg, list(node.inputs), [first_kernel]))
        node.inputs = [first_name]
        node.weights = [second_kernel] + node.weights[1:]
        nodes.append(node)
    graph.nodes = nodes
    return build_model(graph, name=graph.name), rows


def _unique(name: str, taken: set) -> str:
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    taken.add(candidate)
    return candidate
