"""Keras layer names for the operators of a converted model, from the converter's tensor names.

The TFLite converter names an operator's output tensor after the ops it fused, each a path in the Keras model's
name scopes joined with ';' ("digits_cnn_1/conv2d_3_1/Relu;digits_cnn_1/conv2d_3_1/BiasAdd;..."). The layer is
the path's second part; Keras 3 makes scope names unique with a "_N" suffix ("conv2d_3_1" for layer "conv2d_3"),
which is dropped when the Keras model's layer names are known and the suffix is what tells them apart. An operator
without a scope (the model's last SOFTMAX, named "Identity", is Keras's activation of the layer before it) takes
the layer of the operator that produced its input.
"""

from __future__ import annotations

import re

_SUFFIX = re.compile(r"_\d+$")


# The TensorFlow op, in the last segment of a scope path, that marks the Keras layer doing an operator's work.
_MAIN_OPS = {"CONV_2D": ("conv2d", "convolution"), "DEPTHWISE_CONV_2D": ("depthwise",),
             "FULLY_CONNECTED": ("matmul", "tensordot"), "ADD": ("add",), "MUL": ("mul",), "SUB": ("sub",),
             "MAX_POOL_2D": ("maxpool",), "AVERAGE_POOL_2D": ("avgpool",), "MEAN": ("mean",),
             "RESHAPE": ("reshape",), "CONCATENATION": ("concat",), "PAD": ("pad",)}


def _layer(segments: list[str], known: set) -> str | None:
    """The layer scope of one 'model/layer/.../op' path: the second segment, matched to the Keras names."""
    if len(segments) < 3:  # "Identity" or "serving_default_x:0" name no layer
        return None
    if not known:
        return segments[1]
    for segment in segments[1:-1]:
        if segment in known:
            return segment
        stripped = _SUFFIX.sub("", segment)
        if stripped in known:
            return stripped
    return segments[1]


def keras_layer_of(tensor_name: str, keras_names=None, opcode: str | None = None) -> str | None:
    """The Keras layer a tensor belongs to, or None when its name carries no layer scope.

    A fused operator's name lists every layer it absorbed (activation, batch norm, the convolution; shared
    constants may name yet another layer): the layer with the BiasAdd, else the one whose TensorFlow op is the
    operator's (Conv2D for CONV_2D...), else the first one named."""
    known = set(keras_names or ())
    paths = [[s for s in part.split("/") if s] for part in tensor_name.split(";") if "ReadVariableOp" not in part]
    paths = [p for p in paths if len(p) >= 3]
    for path in paths:
        if path[-1] == "BiasAdd":
            return _layer(path, known)
    for keyword in _MAIN_OPS.get(opcode or "", ()):
        for path in paths:
            if path[-1].lower().startswith(keyword):
                return _layer(path, known)
    return _layer(paths[0], known) if paths else None


def operator_layers(graph, keras_names=None) -> list[str | None]:
    """The Keras layer of each operator of the graph (None where neither it nor its producers name one)."""
    producer = {}
    names: list[str | None] = []
    for op in graph.operators:
        name = None
        for output in op.outputs:
            name = name or keras_layer_of(graph.tensors[output].name, keras_names, op.opcode)
        if name is None:
            for i in op.inputs:
                if i in producer and names[producer[i]]:
                    name = names[producer[i]]
                    break
        for output in op.outputs:
            producer[output] = op.index
        names.append(name)
    return names


def label(index: int, op: str, layer: str | None) -> str:
    """How tables and charts name a layer: 'index layer (OP)', or 'index OP' without a Keras name."""
    return f"{index} {layer} ({op})" if layer else f"{index} {op}"


def keras_layer_names(model) -> list[str]:
    """The layer names of a Keras model (nested models' layers included)."""
    names = []
    for layer in getattr(model, "layers", []):
        names.append(layer.name)
        if hasattr(layer, "layers"):
            names += keras_layer_names(layer)
    return names
