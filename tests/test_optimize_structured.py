"""Structured pruning: channels followed through BN, depthwise, Add, Concatenate and Flatten, on real models."""

import numpy as np
import pytest

from edgekit.data import Dataset
from edgekit.errors import EdgekitError
from edgekit.optimize import run_recipe
from edgekit.optimize.graph import read_graph, to_keras3
from edgekit.optimize.metrics import model_macs, model_params
from edgekit.optimize.structured import PRODUCERS, plan_removal, structured_prune


def _branchy_model():
    """Conv stem, a residual Add, a depthwise layer, a Concatenate, BN, Flatten and two Dense layers."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    a = keras.layers.Conv2D(8, 3, padding="same", name="branch")(stem)
    a = keras.layers.BatchNormalization()(a)
    res = keras.layers.Add()([stem, a])
    res = keras.layers.ReLU()(res)
    dw = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(res)
    b = keras.layers.Conv2D(6, 1, name="pointwise")(res)
    cat = keras.layers.Concatenate(name="cat")([dw, b])
    cat = keras.layers.BatchNormalization()(cat)
    x = keras.layers.MaxPooling2D(2)(cat)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(12, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs)
    # BatchNorm statistics that are not the identity, so slicing them wrongly would show
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") if i in (0, 3)
                               else rng.normal(0, 0.3, w.shape).astype("float32")
                               for i, w in enumerate(layer.get_weights())])
    return model


def _zero_removed_inputs(model, ratio):
    """The original model with every kernel row that reads a removed channel set to zero.

    Removing channels must compute exactly this: the removed channels no longer reach any layer that mixes
    channels, and everything else is untouched.
    """
    import keras

    graph = read_graph(model)
    cmap, channels, removed, _ = plan_removal(graph, ratio)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for node in graph.nodes:
        if node.class_name not in PRODUCERS:
            continue
        ids = cmap[node.inputs[0]]
        gone = [i for i, cid in enumerate(ids) if cid is not None and channels.find(cid) in removed]
        weights = clone.get_layer(node.name).get_weights()
        weights[0][..., gone, :] = 0
        clone.get_layer(node.name).set_weights(weights)
    return clone


def test_ratio_zero_rebuilds_the_same_model():
    model = _branchy_model()
    x = np.random.default_rng(2).random((16, 8, 8, 3)).astype("float32")
    same, _ = structured_prune(model, 0.0)
    np.testing.assert_array_equal(same.predict(x, verbose=0), model.predict(x, verbose=0))
    assert model_params(same) == model_params(model)


def test_pruned_model_equals_original_with_removed_channels_cut():
    model = _branchy_model()
    x = np.random.default_rng(3).random((16, 8, 8, 3)).astype("float32")
    pruned, units = structured_prune(model, 0.5)
    expected = _zero_removed_inputs(model, 0.5).predict(x, verbose=0)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert model_macs(pruned) < 0.6 * model_macs(model)
    by_layers = {tuple(u["layers"]): u for u in units}
    # the stem and the conv feeding the residual Add are one unit: same channels kept on both sides
    assert by_layers[("branch", "stem")]["kept"] == 4
    assert by_layers[("classes",)]["kept"] == 4  # the output layer keeps its classes
    assert pruned.get_layer("dw").get_weights()[0].shape[2] == 4
    assert pruned.get_layer("cat").output.shape[-1] == 4 + 3


def test_channel_mixing_barrier_keeps_its_inputs():
    import keras

    inputs = keras.Input((6,))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.Reshape((2, 4))(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3)(x)
    pruned, units = structured_prune(keras.Model(inputs, outputs), 0.5)
    assert all(u["kept"] == u["channels"] for u in units)


def test_bad_ratio_is_one_line_error():
    with pytest.raises(EdgekitError, match="ratio"):
        structured_prune(_branchy_model(), 1.0)


@pytest.mark.slow
def test_digits_half_channels_cut_macs_and_keep_int8_accuracy(digits_cnn):
    data = Dataset(digits_cnn["x_train"], digits_cnn["y_train"], digits_cnn["x_test"], digits_cnn["y_test"])
    model = digits_cnn["model"]
    pruned, report = run_recipe(model, data, [{"technique": "structured", "ratio": 0.5, "epochs": 5}], quiet=True)
    before, after = report["before"], report["after"]
    assert after["macs"] <= 0.6 * before["macs"]
    assert model_macs(pruned) == after["macs"] and model_macs(model) == before["macs"]
    # int8 accuracy of both models on the whole test split, measured through edgekit.quantize
    dense_int8, pruned_int8 = before["int8"]["accuracy"], after["int8"]["accuracy"]
    assert dense_int8 > 0.9
    assert pruned_int8 >= dense_int8 - 0.02, (dense_int8, pruned_int8)
    # the device figures went down with the channels
    assert after["int8"]["flash_bytes"] < 0.5 * before["int8"]["flash_bytes"]
    assert after["int8"]["activation_bytes"] < before["int8"]["activation_bytes"]


def _mlperf_check(model, x):
    """Zero channels removed reproduces the outputs exactly; half removed is smaller and converts to int8."""
    from edgekit.data import from_arrays
    from edgekit.quantize import quantize

    model = to_keras3(model)
    same, _ = structured_prune(model, 0.0)
    np.testing.assert_array_equal(same.predict(x, verbose=0), model.predict(x, verbose=0))
    pruned, units = structured_prune(model, 0.5)
    assert model_params(pruned) < 0.5 * model_params(model)
    assert model_macs(pruned) < 0.5 * model_macs(model)
    result = quantize(pruned, from_arrays(x, x_test=x[:2]), calibration_samples=len(x), eval_samples=2,
                      per_layer=False, quiet=True)
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(result.report["ops"])
    assert result.report["input"]["dtype"] == result.report["output"]["dtype"] == "int8"
    return units


@pytest.mark.slow
def test_mlperf_resnet_residual_adds_tie_channels(float_model_path):
    from edgekit.models import load_model

    model = load_model(float_model_path("ic")).model
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype("float32")
    units = _mlperf_check(model, x)
    assert any(len(u["layers"]) == 2 for u in units)  # a residual ties two convolutions together


@pytest.mark.slow
def test_mlperf_vww_depthwise_from_tf_keras(float_model_path):
    import tf_keras  # Keras 3 cannot read this file (its DepthwiseConv2D config); edgekit.models falls back too

    original = tf_keras.models.load_model(float_model_path("vww"), compile=False)
    x = np.random.default_rng(0).random((4, 96, 96, 3)).astype("float32")
    converted = to_keras3(original)
    assert type(converted).__module__.startswith("keras")
    np.testing.assert_allclose(converted.predict(x, verbose=0), original.predict(x, verbose=0), atol=1e-6)
    _mlperf_check(original, x)


@pytest.mark.slow
def test_mlperf_anomaly_detection_dense_stack(float_model_path):
    from edgekit.models import load_model

    model = load_model(float_model_path("ad")).model
    x = np.random.default_rng(0).random((8, 640)).astype("float32")
    units = _mlperf_check(model, x)
    assert [u for u in units if u["layers"] == ["dense_9"]][0]["kept"] == 640  # the reconstruction keeps its size


def _unseen_bn_depthwise_cnn(seed: int = 0):
    """A digits CNN none of the defaults were tuned on: convolution without bias, BatchNorm after every
    convolution, a depthwise layer whose channels are tied to the stem's, a 1x1 expansion, Flatten and a hidden
    Dense layer; trained in the test."""
    import keras

    from tests.digits import load_digits_split

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(32, 1)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, padding="same")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Dense(32, activation="relu")(layers.Flatten()(x))
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="unseen_bn_dw")
    x_train, y_train, x_test, y_test = load_digits_split(0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    return model, Dataset(x_train, y_train, x_test, y_test)


@pytest.mark.slow
def test_unseen_bn_depthwise_cnn_half_channels_no_flag_keeps_int8_accuracy():
    """`--structured 0.5` and nothing else: the step's own fine-tuning brings int8 accuracy back within a point."""
    from edgekit.optimize import steps_from_flags

    model, data = _unseen_bn_depthwise_cnn()
    steps = steps_from_flags(structured=0.5)
    pruned, report = run_recipe(model, data, steps, quiet=True)
    before, after = report["before"], report["after"]
    assert report["steps"][0]["settings"]["epochs"] == 10  # the default, as on the command line
    assert after["macs"] < 0.3 * before["macs"]  # half the channels of every layer: about a quarter of the MACs
    dense_int8, pruned_int8 = 100 * before["int8"]["accuracy"], 100 * after["int8"]["accuracy"]
    assert dense_int8 > 97, dense_int8
    assert pruned_int8 >= dense_int8 - 1.0, (dense_int8, pruned_int8, report["steps"][0]["details"]["training"])
