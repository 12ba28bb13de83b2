"""Semantic edits of .tflite flatbuffers through tflite-micro's schema object API, for the validation tests.

Each edit takes the model object (schema.ModelT) and changes it in place; `edited(bytes, edit)` packs the result.
"""

from __future__ import annotations

import copy

import numpy as np


def schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def model_object(model_bytes: bytes):
    s = schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAsModel(bytes(model_bytes), 0))


def pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def edited(model_bytes: bytes, edit) -> bytes:
    model = model_object(model_bytes)
    edit(model)
    return pack(model)


def long_chain(ad_bytes: bytes, n_ops: int) -> bytes:
    """A chain of `n_ops` int8 FULLY_CONNECTED 128 -> 128 layers sharing the weights of the AD model's second layer:
    a long (unrolled-recurrent-like) graph that TFLite Micro and both backends accept."""
    model = model_object(ad_bytes)
    subgraph = model.subgraphs[0]
    layer = subgraph.operators[1]
    source, weights, bias = (subgraph.tensors[i] for i in layer.inputs)
    activation = subgraph.tensors[layer.outputs[0]]

    def fresh(template, name):
        t = copy.deepcopy(template)
        t.name, t.buffer = name.encode(), 0
        return t

    tensors = [fresh(source, "input"), weights, bias] + [fresh(activation, f"fc_{i}") for i in range(n_ops)]
    operators = []
    for i in range(n_ops):
        op = copy.deepcopy(layer)
        op.inputs = np.array([0 if i == 0 else 2 + i, 1, 2], dtype=np.int32)
        op.outputs = np.array([3 + i], dtype=np.int32)
        operators.append(op)
    subgraph.tensors, subgraph.operators = tensors, operators
    subgraph.inputs = np.array([0], dtype=np.int32)
    subgraph.outputs = np.array([2 + n_ops], dtype=np.int32)
    model.signatureDefs = None
    return pack(model)
