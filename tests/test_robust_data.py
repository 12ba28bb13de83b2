"""Malformed data, refused in one line by the one loader every command uses (edgekit.data): archives and headers
that lie, objects, text, NaN, empty arrays, and labels that cannot be the model's classes. Through `profile --data`
(which reads the data before it starts a device) and `edgekit.data` directly; `build --data FOLDER` and absurd
calibration data through the CLI (slow: they load TensorFlow)."""

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import EdgekitError
from tests.contract import one_line_error

KWS_SAMPLE = (49, 10, 1)  # the MLPerf Tiny KWS model: int8 input (1, 49, 10, 1), 12 classes out


def edgekit(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def refused(done, *fragments):
    return one_line_error(done, *fragments)


@pytest.fixture()
def kws_build(int8_model_path, tmp_path):
    """A build folder for the KWS model on the host board (profile reads --data before it starts the device)."""
    folder = tmp_path / "build"
    folder.mkdir()
    model = int8_model_path("kws").read_bytes()
    (folder / "kws.tflite").write_bytes(model)
    (folder / "edgekit-build.json").write_text(json.dumps({"board": "host", "backend": "native",
                                                            "model": "kws.tflite", "firmware": "absent",
                                                            "model_sha256": hashlib.sha256(model).hexdigest()}))
    return folder


def samples(n=6, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, *KWS_SAMPLE)).astype(np.float32)


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def lying_npy(shape, dtype="<f4", data=b"\0" * 64) -> bytes:
    """A .npy whose header announces `shape` whatever the bytes after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


# -- archives and headers ------------------------------------------------------------------------------------------


def test_object_arrays_are_not_unpickled(kws_build, tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    refused(edgekit("profile", kws_build, "--data", tmp_path / "objects.npz"), "Python objects", "'x'")


def test_truncated_array_data_inside_an_npz(kws_build, tmp_path):
    whole = npy_bytes(samples())
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as archive:  # a member whose data stops half-way
        archive.writestr("x.npy", whole[:len(whole) // 2])
    refused(edgekit("profile", kws_build, "--data", tmp_path / "short.npz"), "truncated", "'x'")
    np.savez_compressed(tmp_path / "flipped.npz", x=samples())
    raw = bytearray((tmp_path / "flipped.npz").read_bytes())
    for i in range(200, 260):
        raw[i] ^= 0x5A  # corrupt the deflate stream of the member
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    refused(edgekit("profile", kws_build, "--data", tmp_path / "flipped.npz"), "flipped.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "flipped.npz").read_bytes()[:300])  # no central directory
    refused(edgekit("profile", kws_build, "--data", tmp_path / "cut.npz"), "not an .npz archive")


def test_a_text_file_named_npy(kws_build, tmp_path):
    (tmp_path / "x.npy").write_text("1.0, 2.0, 3.0\n4.0, 5.0, 6.0\n")
    refused(edgekit("profile", kws_build, "--data", tmp_path / "x.npy"), "as numpy data")


def test_lying_headers_are_refused_before_allocating(kws_build, tmp_path):
    (tmp_path / "peta.npy").write_bytes(lying_npy((10 ** 15, 49, 10, 1)))  # petabytes announced, 64 bytes there
    refused(edgekit("profile", kws_build, "--data", tmp_path / "peta.npy"), "announces", "expected at most 4 GiB")
    (tmp_path / "short.npy").write_bytes(lying_npy((100, 49, 10, 1)))
    refused(edgekit("profile", kws_build, "--data", tmp_path / "short.npy"), "truncated", "196,000 bytes")
    with zipfile.ZipFile(tmp_path / "peta.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", lying_npy((10 ** 12, 490)))
    refused(edgekit("profile", kws_build, "--data", tmp_path / "peta.npz"), "announces")


def test_nan_and_empty_arrays(kws_build, tmp_path):
    x = samples()
    x[3, 7, 2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    refused(edgekit("profile", kws_build, "--data", tmp_path / "nan.npz"), "NaN or infinite")
    x[3, 7, 2, 0] = np.inf
    with pytest.raises(EdgekitError, match="NaN or infinite"):
        load_dataset(_save(tmp_path / "inf.npy", x))
    np.save(tmp_path / "empty.npy", np.zeros((0, *KWS_SAMPLE), np.float32))
    refused(edgekit("profile", kws_build, "--data", tmp_path / "empty.npy"), "empty")
    with pytest.raises(EdgekitError, match="no values"):
        load_dataset(_save(tmp_path / "hollow.npy", np.zeros((4, 0), np.float32)))


def _save(path, array):
    np.save(path, array)
    return path


# -- labels against the model's output -------------------------------------------------------------------------------


@pytest.mark.parametrize("labels, fragment", [
    (np.array([0, 1, 2, 3, 4, 1000]), "labels range from 0 to 1000; expected class indices 0 to 11"),
    (np.array([0, 1, -1, 3, 4, 5]), "labels range from -1 to 5; expected class indices 0 to 11"),
    (np.eye(10)[[0, 1, 2, 3, 4, 5]], "one-hot labels of width 10, but the model's output has 12 classes"),
    (np.zeros((6, 2, 6)), "labels have shape (2, 6) per sample"),
    (np.full((6, 12), 0.3), "not one-hot rows"),  # float targets of the output's shape: never read as classes
    (np.array([0.5, 1, 2, 3, 4, 5]), "not whole numbers"),
])
def test_labels_that_cannot_be_the_models_classes(kws_build, tmp_path, labels, fragment):
    np.savez(tmp_path / "d.npz", x=samples(), y=labels)
    refused(edgekit("profile", kws_build, "--data", tmp_path / "d.npz"), fragment)


def test_good_labels_are_read_as_classes(tmp_path):
    y = np.array([3, 11, 0, 7, 7, 2])
    np.savez(tmp_path / "ints.npz", x_train=samples(), y_train=y, x_test=samples(seed=1), y_test=y)
    np.savez(tmp_path / "onehot.npz", x_train=samples(), y_train=np.eye(12)[y], x_test=samples(seed=1),
             y_test=np.eye(12, dtype=np.float32)[y][:, None, :])  # (N, 1, 12): a size-1 axis is no new dimension
    for name in ("ints.npz", "onehot.npz"):
        data = load_dataset(tmp_path / name, input_shape=KWS_SAMPLE, output_shape=(12,))
        assert data.y_train.tolist() == y.tolist() and data.y_test.tolist() == y.tolist()
    np.savez(tmp_path / "binary.npz", x=samples(), y=np.array([0, 1, 1, 0, 2, 1]))
    with pytest.raises(EdgekitError, match="0 to 1 for the model's one output"):
        load_dataset(tmp_path / "binary.npz", output_shape=(1,))


def test_int8_data_is_kept_for_profile_and_floats_for_the_others(tmp_path):
    q = np.random.default_rng(0).integers(-128, 128, (6, *KWS_SAMPLE), dtype=np.int8)
    np.save(tmp_path / "q.npy", q)
    kept = load_dataset(tmp_path / "q.npy", KWS_SAMPLE, keep_int8=True).evaluation_samples()[0]
    assert kept.dtype == np.int8 and sorted(map(bytes, kept)) == sorted(map(bytes, q))
    assert load_dataset(tmp_path / "q.npy", KWS_SAMPLE).x_train.dtype == np.float32


# -- through the whole pipeline (TensorFlow) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    """An untrained 8x8x1 -> 4-class Keras model (quantization needs no accuracy), saved as .keras."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_build_takes_the_image_folders_quantize_takes(tiny_keras, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(6):  # 16x16 RGB: resized and turned grey for the 8x8x1 input, as quantize does
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "images" / label /
                                                                                    f"{i}.png")
    done = edgekit("build", tiny_keras, "--data", tmp_path / "images", "--board", "host", "--no-compile", "-o",
                   tmp_path / "out", "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    stages = {s["stage"]: s for s in json.loads(done.stdout)["stages"]}
    assert stages["quantize"]["report"]["labels"] is True and (tmp_path / "out" / "edgekit-build.json").is_file()


@pytest.mark.slow
def test_absurd_calibration_data_writes_nothing(tiny_keras, tmp_path):
    np.savez(tmp_path / "absurd.npz", x=np.full((20, 8, 8, 1), 3e38, np.float32))
    done = edgekit("quantize", tiny_keras, "--data", tmp_path / "absurd.npz", "-o", tmp_path / "q.tflite",
                   timeout=600)
    refused(done, "values up to 3e+38", "expected magnitudes of at most 1e+18")
    assert os.listdir(tmp_path) == ["absurd.npz"]
