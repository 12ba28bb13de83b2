"""Keras models of the families users bring, end to end on the native backend: quantize -> build for the host ->
profile against TFLite Micro, with max_abs_diff 0.

SeparableConv + LeakyReLU + hard-swish + bilinear UpSampling, a Conv1D audio model with GlobalMaxPooling1D, a
Conv2DTranspose autoencoder, a small attention block (MultiHeadAttention, LayerNormalization) and MobileNetV2 at
a small width. Weights are random (seeded): these tests prove the ops, not accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest


def _end_to_end(model, input_shape, tmp_path, *, seed: int = 0, expected_ops=()):
    from edgekit.build import build
    from edgekit.data import from_arrays
    from edgekit.profile import profile_build
    from edgekit.quantize import quantize
    from edgekit.tflite_model import parse_tflite

    x = np.random.RandomState(seed).uniform(-1, 1, size=(48, *input_shape)).astype(np.float32)
    result = quantize(model, from_arrays(x), calibration_samples=32, eval_samples=8, quiet=True)
    graph = parse_tflite(result.tflite_bytes, "family")
    assert set(expected_ops) <= set(graph.opcodes), graph.opcodes
    path = tmp_path / "model.tflite"
    path.write_bytes(result.tflite_bytes)
    build(path, "host", tmp_path / "build", backend="native", quiet=True)
    report = profile_build(tmp_path / "build", runs=8, seed=seed)
    assert report["max_abs_diff"] == 0, report
    return graph


def _keras():
    from edgekit._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    return k


@pytest.mark.slow
def test_separable_leaky_hard_swish_upsampling(tmp_path):
    k = _keras()
    L = k.layers
    inputs = k.Input((12, 12, 3))
    x = L.SeparableConv2D(8, 3, padding="same")(inputs)
    x = L.LeakyReLU(0.1)(x)
    x = L.SeparableConv2D(8, 3, strides=2, padding="same")(x)
    x = L.Activation("hard_swish")(x)
    x = L.UpSampling2D(interpolation="bilinear")(x)
    x = L.Conv2D(4, 1)(x)
    x = L.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, L.Dense(3, activation="softmax")(x))
    _end_to_end(model, (12, 12, 3), tmp_path, expected_ops={"LEAKY_RELU", "HARD_SWISH", "RESIZE_BILINEAR"})


@pytest.mark.slow
def test_conv1d_audio_with_global_max_pooling(tmp_path):
    k = _keras()
    L = k.layers
    model = k.Sequential([k.Input((49, 10)), L.Conv1D(8, 5, strides=2, activation="relu"),
                          L.Conv1D(8, 3, padding="same", activation="relu"), L.GlobalMaxPooling1D(),
                          L.Dense(4, activation="softmax")])
    _end_to_end(model, (49, 10), tmp_path, expected_ops={"REDUCE_MAX", "CONV_2D"})


@pytest.mark.slow
def test_conv2d_transpose_autoencoder(tmp_path):
    k = _keras()
    L = k.layers
    model = k.Sequential([k.Input((16, 16, 1)), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                          L.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
                          L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"),
                          L.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")])
    _end_to_end(model, (16, 16, 1), tmp_path, expected_ops={"TRANSPOSE_CONV"})


@pytest.mark.slow
def test_small_attention_block(tmp_path):
    k = _keras()
    L = k.layers
    inputs = k.Input((6, 8))
    x = L.Dense(8)(inputs)
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = L.Add()([x, attended])  # no LayerNormalization: its float NEG makes `edgekit quantize` refuse the model
    x = L.GlobalAveragePooling1D()(L.Dense(8, activation="relu")(x))  # (tests/test_native_ops.py covers it)
    model = k.Model(inputs, L.Dense(3, activation="softmax")(x))
    _end_to_end(model, (6, 8), tmp_path, expected_ops={"BATCH_MATMUL", "TRANSPOSE", "SOFTMAX"})


@pytest.mark.slow
def test_mobilenet_v2_small_width(tmp_path):
    k = _keras()
    # no softmax on top: untrained logits span so little that TFLite Micro's softmax Prepare aborts
    # (QuantizeMultiplierGreaterThanOne on a multiplier below one), as it would on a device
    model = k.applications.MobileNetV2(input_shape=(48, 48, 3), alpha=0.35, weights=None, classes=4,
                                       classifier_activation=None)
    _end_to_end(model, (48, 48, 3), tmp_path, expected_ops={"DEPTHWISE_CONV_2D", "ADD", "MEAN"})
