"""Recurrent Keras layers, traced so the TFLite converter gives a deterministic integer model.

Traced as Keras runs them, LSTM and GRU become a WHILE loop over three subgraphs whose body passes the input
sequence straight through. The WHILE kernel frees such a pass-through output at prepare time, but TensorFlow's
calibrator has already listed it as a tensor to log, reads its null data and segfaults (tensorflow/tensorflow
#75140, since TF 2.14). So, while a model is traced for conversion only:

- an LSTM that TFLite has a fused kernel for (tanh/sigmoid, with bias, no recurrent dropout, forwards) is traced
  through a function marked `api_implements: lstm_<uuid>`, the marker the converter rewrites into one
  UNIDIRECTIONAL_SEQUENCE_LSTM (int8 activations, int16 cell state: TFLite Micro's integer kernel);
- every other recurrent layer (GRU, SimpleRNN, other LSTMs) is unrolled over its fixed number of time steps: no
  control flow is left, and the result is the same graph on every run.

Nothing of the user's model changes outside the `with` block.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager


def _layers(model):
    seen, stack = [], [model]
    while stack:
        layer = stack.pop()
        if any(layer is s for s in seen):
            continue
        seen.append(layer)
        for attr in ("layers", "_layers"):
            children = getattr(layer, attr, None)
            if isinstance(children, (list, tuple)):
                stack.extend(children)
        for attr in ("layer", "forward_layer", "backward_layer"):  # Bidirectional, TimeDistributed wrappers
            child = getattr(layer, attr, None)
            if child is not None and hasattr(child, "get_config"):
                stack.append(child)
    return seen[1:] if seen and seen[0] is model else seen


def _activation_name(fn) -> str:
    return getattr(fn, "__name__", str(fn))


def fusable_lstm(layer) -> bool:
    """Whether TFLite's fused sequence LSTM computes exactly this Keras 3 LSTM."""
    cell = getattr(layer, "cell", None)
    return (type(layer).__name__ == "LSTM" and cell is not None
            and _activation_name(cell.activation) == "tanh"
            and _activation_name(cell.recurrent_activation) == "sigmoid"
            and bool(cell.use_bias) and not getattr(cell, "recurrent_dropout", 0)
            and not layer.go_backwards and not getattr(layer, "stateful", False)
            and getattr(layer, "use_cudnn", "auto") in ("auto", True))


def has_fusable_lstm(model) -> bool:
    return any(fusable_lstm(l) for l in _layers(model) if type(l).__module__.startswith("keras."))


def recurrent_summary(model) -> dict:
    """{"fused_lstm": [...names], "unrolled": [...names]}: what conversion does with each recurrent layer."""
    fused, unrolled = [], []
    for layer in _layers(model):
        if not hasattr(layer, "unroll") or not hasattr(layer, "cell"):
            continue
        (fused if fusable_lstm(layer) else unrolled).append(layer.name)
    return {"fused_lstm": fused, "unrolled": unrolled}


def _fused_lstm(inputs, initial_state_h, initial_state_c, mask, kernel, recurrent_kernel, bias, activation,
                recurrent_activation, return_sequences=False, go_backwards=False, unroll=False, time_major=False):
    """Keras 3's backend.lstm signature, computed by a function the converter fuses (tf_keras' standard_lstm)."""
    if (mask is not None or go_backwards or time_major or bias is None
            or _activation_name(activation) != "tanh" or _activation_name(recurrent_activation) != "sigmoid"):
        raise NotImplementedError  # Keras falls back to its generic loop (unrolled, see below)
    from tf_keras.src.layers.rnn import gru_lstm_utils
    from tf_keras.src.layers.rnn.lstm import standard_lstm

    from edgekit._tf import tensorflow

    def value(v):  # a read tensor, not a resource handle: the converter wants rank-2 weights as arguments
        return tensorflow().convert_to_tensor(v)

    function = gru_lstm_utils.generate_defun_backend(
        "lstm_" + str(uuid.uuid4()), gru_lstm_utils.CPU_DEVICE_NAME, standard_lstm,
        {"time_major": False, "go_backwards": False})
    last, outputs, h, c, _ = function(
        inputs=inputs, init_h=initial_state_h, init_c=initial_state_c, kernel=value(kernel),
        recurrent_kernel=value(recurrent_kernel), bias=value(bias), mask=None, time_major=False,
        go_backwards=False, sequence_lengths=None, zero_output_for_mask=False, return_sequences=return_sequences)
    return last, outputs, [h, c]


@contextmanager
def recurrent_layers_for_conversion(model):
    """Within the block, tracing `model` gives fused LSTMs and unrolled other recurrent layers (see the module)."""
    if model is None:
        yield
        return
    layers = [l for l in _layers(model) if hasattr(l, "unroll") and hasattr(l, "cell")]
    if not layers:
        yield
        return
    saved_unroll = [(layer, layer.unroll) for layer in layers]
    patched = None
    try:
        for layer in layers:  # tf_keras marks its own fusable LSTM's function already
            layer.unroll = not fusable_lstm(layer)
        if any(type(l).__module__.startswith("keras.") and fusable_lstm(l) for l in layers):
            import keras.src.backend as backend

            patched = (backend, backend.lstm)
            backend.lstm = _fused_lstm
        yield
    finally:
        if patched is not None:
            patched[0].lstm = patched[1]
        for layer, unroll in saved_unroll:
            layer.unroll = unroll
