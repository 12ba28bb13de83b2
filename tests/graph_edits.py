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


# ----------------------------------------------------------------------------------------------------------------
# One edit per validation rule, on the KWS model (operators: 0 CONV_2D [0, 17, 3] -> 22, 1 DEPTHWISE_CONV_2D
# [22, 5, 4] -> 23, 2 CONV_2D, ..., 9 AVERAGE_POOL_2D 30 -> 31, 10 RESHAPE 31 -> 32, 11 FULLY_CONNECTED -> 33,
# 12 SOFTMAX 33 -> 34; input 0, output 34; tensor 5 is the first depthwise filter, 64 per-channel scales on dim 3).

def _ops(m):
    return m.subgraphs[0].operators


def _tensors(m):
    return m.subgraphs[0].tensors


def _set(path, value):
    """An edit that sets one attribute reached by `path(model)` -> (object, attribute name)."""
    def edit(m):
        target, attribute = path(m)
        setattr(target, attribute, value)
    return edit


def _new_tensor(m, template: int) -> int:
    t = copy.deepcopy(_tensors(m)[template])
    t.name, t.buffer = b"orphan", 0
    _tensors(m).append(t)
    return len(_tensors(m)) - 1


def _add_subgraph(m):
    s = schema()
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.WHILE
    m.operatorCodes.append(code)
    _ops(m)[12].opcodeIndex = len(m.operatorCodes) - 1
    m.subgraphs.append(copy.deepcopy(m.subgraphs[0]))


def _ints(*values):
    return np.array(values, dtype=np.int32)


def _swap_ops(m):
    ops = _ops(m)
    ops[11], ops[12] = ops[12], ops[11]


def _drop_options(m):
    _ops(m)[0].builtinOptionsType, _ops(m)[0].builtinOptions = 0, None


def _truncate_buffer(m):
    buffer = m.buffers[_tensors(m)[5].buffer]
    buffer.data = buffer.data[:-1]


def _quant(tensor: int, attribute: str, value):
    return _set(lambda m: (_tensors(m)[tensor].quantization, attribute), value)


def _option(op: int, attribute: str, value):
    return _set(lambda m: (_ops(m)[op].builtinOptions, attribute), value)


def _small_bias(m):
    bias = _tensors(m)[4]  # depthwise op 1's bias: 64 int32
    bias.shape = _ints(32)
    buffer = m.buffers[bias.buffer]
    buffer.data = buffer.data[:128]
    bias.quantization.scale = bias.quantization.scale[:32]
    bias.quantization.zeroPoint = bias.quantization.zeroPoint[:32]


def _orphan_input(m):
    _ops(m)[1].inputs = _ints(_new_tensor(m, 22), 5, 4)


def _orphan_output(m):
    m.subgraphs[0].outputs = _ints(_new_tensor(m, 34))


RULE_EDITS = [
    # (rule named in the message, what the edit does, edit)
    ("schema version", "version 99", _set(lambda m: (m, "version"), 99)),
    ("subgraphs", "a second subgraph and a WHILE", _add_subgraph),
    ("opcode index", "opcode index 99", _set(lambda m: (_ops(m)[0], "opcodeIndex"), 99)),
    ("tensor index", "an input index past the tensors", _set(lambda m: (_ops(m)[1], "inputs"), _ints(999, 5, 4))),
    ("tensor index", "an output index of -1", _set(lambda m: (_ops(m)[1], "outputs"), _ints(-1))),
    ("graph inputs", "no graph input", _set(lambda m: (m.subgraphs[0], "inputs"), _ints())),
    ("graph outputs", "graph output out of range", _set(lambda m: (m.subgraphs[0], "outputs"), _ints(999))),
    ("graph outputs", "graph output never written", _orphan_output),
    ("constant graph input", "the weights as graph input", _set(lambda m: (m.subgraphs[0], "inputs"), _ints(17))),
    ("output is a graph input", "op 0 writes the input", _set(lambda m: (_ops(m)[0], "outputs"), _ints(0))),
    ("output is a constant", "op 1 writes a weight", _set(lambda m: (_ops(m)[1], "outputs"), _ints(17))),
    ("two producers", "ops 1 and 2 write tensor 23", _set(lambda m: (_ops(m)[2], "outputs"), _ints(23))),
    ("cycle", "op 0 reads op 1's output", _set(lambda m: (_ops(m)[0], "inputs"), _ints(23, 17, 3))),
    ("execution order", "softmax stored before its FC", _swap_ops),
    ("undefined input", "op 1 reads a tensor nobody writes", _orphan_input),
    ("operator inputs", "depthwise without its filter", _set(lambda m: (_ops(m)[3], "inputs"), _ints(24))),
    ("reshape size", "reshape to 65 elements", _set(lambda m: (_tensors(m)[32], "shape"), _ints(1, 65))),
    ("stride", "stride 0", _option(1, "strideH", 0)),
    ("stride", "negative stride", _option(1, "strideW", -2)),
    ("dilation", "dilation 0", _option(1, "dilationHFactor", 0)),
    ("dilation", "dilation 2^20", _option(1, "dilationWFactor", 1 << 20)),
    ("padding", "padding enum 7", _option(1, "padding", 7)),
    ("activation", "activation enum 9", _option(1, "fusedActivationFunction", 9)),
    ("filter size", "pool window 0", _option(9, "filterHeight", 0)),
    ("options", "conv without options", _drop_options),
    ("window shape", "conv output height 24 instead of 25", _set(lambda m: (_tensors(m)[22], "shape"),
                                                                  _ints(1, 24, 5, 64))),
    ("bias size", "32 biases for 64 channels", _small_bias),
    ("zero points", "2 zero points for 64 scales", _quant(5, "zeroPoint", np.zeros(2, dtype=np.int64))),
    ("per-channel scales", "32 scales for 64 channels", lambda m: (
        _quant(5, "scale", _tensors(m)[5].quantization.scale[:32])(m),
        _quant(5, "zeroPoint", _tensors(m)[5].quantization.zeroPoint[:32])(m))),
    ("quantized dimension", "quantized_dimension 7", _quant(5, "quantizedDimension", 7)),
    ("dimensions", "a 0-sized dimension", _set(lambda m: (_tensors(m)[22], "shape"), _ints(1, 0, 5, 64))),
    ("dimensions", "a negative dimension", _set(lambda m: (_tensors(m)[22], "shape"), _ints(1, -25, 5, 64))),
    ("tensor size", "a 256 GiB activation", _set(lambda m: (_tensors(m)[22], "shape"), _ints(1, 1 << 20, 1 << 12, 64))),
    ("tensor type", "tensor type 99", _set(lambda m: (_tensors(m)[22], "type"), 99)),
    ("scale", "scale 0", _quant(22, "scale", np.array([0.0], dtype=np.float32))),
    ("scale", "scale NaN", _quant(22, "scale", np.array([np.nan], dtype=np.float32))),
    ("scale", "scale inf", _quant(0, "scale", np.array([np.inf], dtype=np.float32))),
    ("scale", "scale 1e36", _quant(0, "scale", np.array([1e36], dtype=np.float32))),
    ("unquantized activation", "int8 activation without quantization",
     _set(lambda m: (_tensors(m)[22], "quantization"), None)),
    ("unquantized activation", "int8 input without quantization",
     _set(lambda m: (_tensors(m)[0], "quantization"), None)),
    ("buffer index", "buffer 9999", _set(lambda m: (_tensors(m)[5], "buffer"), 9999)),
    ("constant size", "weights one byte short", _truncate_buffer),
]
