"""A plain description of a Keras model's layer graph, and a rebuild of it as a Keras 3 model.

Structured pruning and low-rank factorization change layer shapes, which Keras cannot do in place: we read the
model into `Node`s (class, config, inputs, weights), edit them, and build a new Keras 3 functional model. The
reader works for Keras 3 and tf_keras models alike (both serialize the same way), which is also how a tf_keras
model (e.g. an .h5 that Keras 3 refuses to load) becomes a Keras 3 model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from edgekit.errors import EdgekitError

# Config keys that only steer training-time behaviour; dropped when a tf_keras layer is rebuilt in Keras 3 (the
# weights are copied, so initializers do not matter, and tf_keras serializations of them may not load).
_TRAINING_ONLY_SUFFIXES = ("_initializer", "_regularizer", "_constraint")


@dataclass
class Node:
    """One layer call: `inputs` are names of the nodes it consumes, `weights` its arrays in Keras order."""

    name: str
    class_name: str
    config: dict
    inputs: list[str]
    weights: list = field(default_factory=list)
    layer: object = None  # the source layer (for layers we rebuild verbatim)
    input_shape: tuple | None = None  # for InputLayer nodes: shape without the batch axis
    input_dtype: str = "float32"


@dataclass
class ModelGraph:
    nodes: list[Node]  # topological order
    outputs: list[str]
    name: str
    framework: str  # "keras3" or "tf_keras"

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]


def framework_of(model) -> str:
    return "tf_keras" if type(model).__module__.startswith("tf_keras") else "keras3"


def read_graph(model) -> ModelGraph:
    """The layer graph of a Sequential or functional model (Keras 3 or tf_keras)."""
    framework = framework_of(model)
    config = model.get_config()
    if "input_layers" not in config:  # Sequential: a chain
        return _read_sequential(model, framework)
    nodes = []
    for entry in config["layers"]:
        name = entry["name"] if "name" in entry else entry["config"]["name"]
        layer = model.get_layer(name)
        inbound = entry.get("inbound_nodes") or []
        if len(inbound) > 1:
            raise EdgekitError(f"layer {name!r} is called more than once (shared layer); optimize expects each "
                               f"layer used once")
        inputs = []
        for history in _histories(inbound[0] if inbound else []):
            if history[2] != 0 or history[1] != 0:
                raise EdgekitError(f"layer {name!r} consumes a secondary output of {history[0]!r}; optimize "
                                   f"expects single-output layers")
            inputs.append(history[0])
        nodes.append(_node(layer, entry["class_name"], inputs))
    outputs = config["output_layers"]
    if outputs and isinstance(outputs[0], str):
        outputs = [outputs]
    return ModelGraph(nodes, [o[0] for o in outputs], model.name, framework)


def _read_sequential(model, framework) -> ModelGraph:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise EdgekitError(f"model {model.name!r} has no input shape yet; build it with keras.Input(shape) first")
    shape = tuple(inputs[0].shape[1:])
    dtype = str(getattr(inputs[0].dtype, "name", inputs[0].dtype))
    nodes = [Node("input", "InputLayer", {}, [], input_shape=shape, input_dtype=dtype)]
    previous = "input"
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        nodes.append(_node(layer, type(layer).__name__, [previous]))
        previous = layer.name
    return ModelGraph(nodes, [previous], model.name, framework)


def _node(layer, class_name, inputs) -> Node:
    if class_name == "InputLayer":
        shape = tuple(layer.output.shape[1:]) if hasattr(layer, "output") else None
        dtype = str(getattr(layer.output.dtype, "name", layer.output.dtype))
        return Node(layer.name, "InputLayer", {}, [], input_shape=shape, input_dtype=dtype)
    return Node(layer.name, type(layer).__name__, layer.get_config(), inputs,
                [w.copy() for w in layer.get_weights()], layer)


def _histories(value):
    """All keras_history triples in one serialized inbound node, in argument order (both serialization styles)."""
    found = []
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            found.append(value["config"]["keras_history"])
        else:
            for key in ("args", "kwargs"):
                if key in value:
                    found.extend(_histories(value[key]))
    elif isinstance(value, (list, tuple)):
        # tf_keras style: [name, node_index, tensor_index, kwargs]
        if len(value) in (3, 4) and isinstance(value[0], str) and isinstance(value[1], int):
            found.append(list(value[:3]))
        else:
            for item in value:
                found.extend(_histories(item))
    return found


def build_model(graph: ModelGraph, name: str | None = None):
    """A Keras 3 functional model from the graph, weights set; layer names are kept."""
    from edgekit._tf import keras

    k = keras()
    tensors = {}
    layers = []
    for node in graph.nodes:
        if node.class_name == "InputLayer":
            tensors[node.name] = k.Input(shape=node.input_shape, dtype=node.input_dtype, name=node.name)
            continue
        args = [tensors[i] for i in node.inputs]
        try:
            layer = _make_layer(k, node, graph.framework)
            tensors[node.name] = layer(args if _takes_list(node.class_name) else args[0])
            if node.weights:
                layer.set_weights(node.weights)
        except EdgekitError:
            raise
        except Exception as error:  # a layer Keras 3 cannot rebuild from its config (Lambda, custom layers...)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise EdgekitError(f"cannot rebuild layer {node.name!r} ({node.class_name}) as a Keras 3 layer: "
                               f"{first}") from None
        layers.append(layer)
    inputs = [tensors[n.name] for n in graph.nodes if n.class_name == "InputLayer"]
    outputs = [tensors[o] for o in graph.outputs]
    return k.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                   name=name or graph.name)


_MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}


def _takes_list(class_name: str) -> bool:
    return class_name in _MERGE_LAYERS


def _make_layer(k, node: Node, framework: str):
    """A fresh Keras 3 layer from the node's config (configs of tf_keras layers are cleaned up first)."""
    if framework == "keras3" and node.layer is not None:
        return type(node.layer).from_config(node.config)
    cls = getattr(k.layers, node.class_name, None)
    if cls is None:
        raise EdgekitError(f"layer {node.name!r} of type {node.class_name} has no Keras 3 equivalent; optimize "
                           f"supports built-in Keras layers")
    config = dict(node.config)
    if framework == "tf_keras":
        config = {key: v for key, v in config.items() if not key.endswith(_TRAINING_ONLY_SUFFIXES)}
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = "float32"
    accepted = _accepted_keys(cls)
    if accepted is not None:
        config = {key: v for key, v in config.items() if key in accepted}
    if node.class_name == "BatchNormalization" and isinstance(config.get("axis"), (list, tuple)):
        config["axis"] = config["axis"][0]
    return cls(**config)


def _accepted_keys(cls):
    """Constructor keyword names of a layer class and its bases; None when it takes anything."""
    keys = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        keys.update(p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY))
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            break
    keys.discard("self")
    return keys


def to_keras3(model):
    """A Keras 3 copy of a tf_keras model (the same model when it already is Keras 3)."""
    if framework_of(model) == "keras3":
        return model
    return build_model(read_graph(model))
