"""Model intake: every format loads, and bad files get one clear line."""

import numpy as np
import pytest

from edgekit.errors import EdgekitError
from edgekit.models import load_model


def test_keras3_file_loads_and_predicts(digits_cnn):
    loaded = load_model(digits_cnn["keras_path"])
    assert loaded.framework == "keras3" and loaded.note is None
    assert loaded.input_shape == (8, 8, 1)
    x = digits_cnn["x_test"][:20]
    np.testing.assert_allclose(loaded.predict(x), digits_cnn["model"].predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_h5_written_by_keras3_loads_without_fallback(digits_cnn, tmp_path):
    path = tmp_path / "digits.h5"
    digits_cnn["model"].save(path)
    loaded = load_model(path)
    assert loaded.framework == "keras3"
    assert loaded.predict(digits_cnn["x_test"][:5]).shape == (5, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name, framework, shape", [
    ("ic", "keras3", (32, 32, 3)),
    ("ad", "keras3", (640,)),
    ("vww", "tf_keras", (96, 96, 3)),
    ("sww", "tf_keras", (30, 1, 40)),
    ("kws", "tf_keras", (49, 10, 1)),
])
def test_mlperf_tiny_float_models_load(float_model_path, name, framework, shape):
    loaded = load_model(float_model_path(name))
    assert loaded.framework == framework
    assert loaded.input_shape == shape
    if framework == "tf_keras":  # the fallback is said, in one line
        assert loaded.note and "\n" not in loaded.note and "tf_keras" in loaded.note
    frozen = loaded.frozen_function(batch=1)
    assert tuple(frozen.inputs[0].shape) == (1, *shape)


def test_plain_tensorflow_saved_model_loads(tmp_path):
    from edgekit._tf import tensorflow

    tf = tensorflow()

    class Scale(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w))}

    module = Scale()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    loaded = load_model(tmp_path / "sm")
    assert loaded.framework == "saved_model" and loaded.input_shape == (4,)
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), np.maximum(x @ module.w.numpy(), 0), rtol=1e-5)


def test_tflite_file_is_accepted(int8_model_path):
    loaded = load_model(int8_model_path("kws"))
    assert loaded.framework == "tflite" and loaded.input_shape == (49, 10, 1)


@pytest.mark.parametrize("content, suffix, expected", [
    (b"hello, not a model", ".keras", "not a valid .keras"),
    (b"hello, not a model", ".txt", "is not a model"),
    (b"\x00\x00\x00\x00TFL3\x10\x00", ".tflite", "truncated or corrupted"),
])
def test_bad_files_give_one_line(tmp_path, content, suffix, expected):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(EdgekitError, match=expected) as error:
        load_model(path)
    assert "\n" not in str(error.value)


def test_missing_model_and_folder_without_saved_model(tmp_path):
    with pytest.raises(EdgekitError, match="not found"):
        load_model(tmp_path / "nope.keras")
    with pytest.raises(EdgekitError, match="without saved_model.pb"):
        load_model(tmp_path)
