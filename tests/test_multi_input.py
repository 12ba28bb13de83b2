"""Models of several inputs: their data (.npz keyed by input name or x0, x1, ...) and their quantization.

The loader keeps sample i of every input together through the split and refuses, in one line naming the key it
expected, an archive with an input missing or inputs of different lengths. A two-input Keras model (an image and
a feature vector) trained briefly is quantized and run by LiteRT input by input.
"""

import numpy as np
import pytest

from edgekit.data import load_multi_input
from edgekit.errors import EdgekitError

NAMES, SHAPES = ["image", "meta"], [(8, 8, 1), (5,)]


def _arrays(count=40, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(count, 8, 8, 1)).astype(np.float32)
    meta = rng.normal(size=(count, 5)).astype(np.float32)
    meta[:, 0] = np.arange(count)  # a sample's id, to check that the inputs stay paired through the split
    image[:, 0, 0, 0] = np.arange(count)
    y = ((image.mean(axis=(1, 2, 3)) * 4 + meta[:, 1]) > 0).astype(np.int64)
    return image, meta, y


@pytest.mark.parametrize("keys", [("image", "meta"), ("x0", "x1")])
def test_inputs_are_read_by_name_or_position_and_stay_paired(tmp_path, keys):
    image, meta, y = _arrays()
    np.savez(tmp_path / "d.npz", **{keys[0]: image, keys[1]: meta, "y": y})
    data = load_multi_input(tmp_path / "d.npz", NAMES, SHAPES, output_shape=(2,), last_activation="softmax")
    assert data.sample_shape == SHAPES and data.task == "classification"
    for xs, labels in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        ids = xs[1][:, 0].astype(int)
        assert np.array_equal(xs[0][:, 0, 0, 0].astype(int), ids) and np.array_equal(labels, y[ids])
    assert len(data.x_train[0]) + len(data.x_test[0]) == 40


@pytest.mark.parametrize("arrays, fragment", [
    ({"image": np.zeros((4, 8, 8, 1))}, "no array for input 1 'meta'; expected a key 'meta' or 'x1'"),
    ({"x0": np.zeros((4, 8, 8, 1)), "x1": np.zeros((5, 5))}, "different numbers of samples"),
    ({"x0": np.zeros((4, 8, 8, 1)), "x1": np.zeros((4, 6))}, "x1 has samples of shape (6,)"),
    ({"x0": np.zeros((4, 8, 8, 1)), "x1": np.zeros((4, 5)), "y": np.arange(3)}, "4 samples but 3 labels"),
])
def test_bad_multi_input_archives_are_one_line(tmp_path, arrays, fragment):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(EdgekitError) as error:
        load_multi_input(tmp_path / "d.npz", NAMES, SHAPES, output_shape=(2,))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_folder_for_a_two_input_model_is_refused_naming_the_keys(tmp_path):
    with pytest.raises(EdgekitError, match=r"needs an .npz with one array per input \(keys 'image', 'meta' or x0"):
        load_multi_input(tmp_path, NAMES, SHAPES)


@pytest.mark.slow
def test_a_two_input_model_quantizes_to_a_two_input_int8_model(tmp_path):
    import keras

    from edgekit.quantize import quantize
    from edgekit.tflite_model import parse_tflite

    keras.utils.set_random_seed(0)
    image, meta, y = _arrays(300, seed=1)
    image[:, 0, 0, 0] = 0
    meta[:, 0] = 0
    a, b = keras.Input(SHAPES[0], name="image"), keras.Input(SHAPES[1], name="meta")
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(a))
    h = keras.layers.Concatenate()([h, keras.layers.Dense(8, activation="relu")(b)])
    model = keras.Model([a, b], keras.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit([image, meta], y, epochs=8, verbose=0)
    np.savez(tmp_path / "two.npz", image=image, meta=meta, y=y)
    result = quantize(model, tmp_path / "two.npz", calibration_samples=100, quiet=True)
    graph = parse_tflite(result.tflite_bytes)
    assert graph.is_fully_int8 and [t.shape for t in graph.input_tensors()] == [(1, 8, 8, 1), (1, 5)]
    report = result.report
    assert report["task"] == "classification" and report["top1_agreement"] >= 0.95
    assert report["int8_accuracy"] > 0.8 and abs(report["accuracy_drop_points"]) <= 3
    assert [i["name"] for i in report["inputs"]] == ["image", "meta"]
