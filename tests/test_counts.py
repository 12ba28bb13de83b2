"""One way to count: MACs, parameters and activation RAM come from the graph (edgekit.analyze.counts) for every
command, and analyze's native arena is the one a native build reserves.

A small Conv2DTranspose autoencoder, trained briefly, is the model optimize used to undercount (its transposed
convolution had no MACs: 70,560 against analyze's 141,120 on the issue's model); it is also scored the way its
users judge it, by reconstruction error, through quantize -> build -> profile.
"""

import shutil

import numpy as np
import pytest



def _autoencoder():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x_train = np.clip(rng.normal(0.5, 0.2, (160, 12, 12, 1)), 0, 1).astype(np.float32)
    model.fit(x_train, x_train, epochs=3, batch_size=32, verbose=0)
    return model, x_train


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    from edgekit.data import from_arrays
    from edgekit.quantize import quantize

    model, x = _autoencoder()
    folder = tmp_path_factory.mktemp("autoencoder")
    data = from_arrays(x, input_shape=(12, 12, 1))
    result = quantize(model, data, calibration_samples=64, per_layer=False, quiet=True)
    path = folder / "ae.tflite"
    path.write_bytes(result.tflite_bytes)
    return {"model": model, "data": data, "path": path, "report": result.report}


def test_optimize_counts_what_analyze_counts(autoencoder):
    from edgekit.analyze import analyze, counts
    from edgekit.optimize import measure
    from edgekit.optimize.metrics import model_macs
    from edgekit.tflite_model import load_tflite

    graph = load_tflite(autoencoder["path"])
    report = analyze(graph)
    figures = measure(autoencoder["model"], autoencoder["data"])
    assert figures["macs"] == report["macs"] == counts(graph)["macs"]
    assert figures["params"] == report["params"]
    transpose = next(r for r in report["layers"] if r["op"] == "TRANSPOSE_CONV")
    assert transpose["macs"] == 6 * 6 * 6 * 3 * 3 * 1  # input elements x kernel x filters
    assert model_macs(autoencoder["model"]) == report["macs"]  # the Keras-side fallback agrees too


def test_the_reconstruction_task_is_reported_by_its_error(autoencoder):
    report = autoencoder["report"]
    assert report["task"] == "reconstruction" and report["top1_agreement"] is None
    errors = report["task_metrics"]
    assert 0 < errors["int8"]["reconstruction_mse"] < 0.05
    assert abs(errors["int8"]["reconstruction_mse"] - errors["float"]["reconstruction_mse"]) < 0.005


def test_analyze_reports_the_native_arena_a_build_reserves(int8_model_path, tmp_path):
    from edgekit.analyze import analyze
    from edgekit.build import build
    from edgekit.tflite_model import load_tflite

    path = int8_model_path("ic")
    report = analyze(load_tflite(path), backend="native")
    result = build(path, "host", tmp_path / "b", backend="native", compile=False, quiet=True)
    assert report["native_arena_bytes"] == result["manifest"]["arena_bytes"]
    assert report["ram_breakdown"]["arena_bytes"] == report["native_arena_bytes"]


def test_analyze_counts_the_native_constants_the_firmware_holds(int8_model_path, tmp_path):
    """The native kernels keep convolution and fully connected weights pre-extended to int16: analyze counted the
    .tflite's int8 bytes, half of what the firmware holds, so 'fits' could be wrong for flash."""
    from edgekit.analyze import analyze
    from edgekit.boards import load_board
    from edgekit.codegen.native import generate_native_model
    from edgekit.tflite_model import load_tflite

    graph = load_tflite(int8_model_path("kws"))
    report = analyze(graph, load_board("nucleo-l4r5zi"), "native")
    written = generate_native_model(graph, tmp_path / "m", preserve_input=True)
    assert report["flash_breakdown"]["model_bytes"] == written.weight_bytes > report["weights_bytes"]
    assert report["flash_bytes"] == written.weight_bytes + report["flash_breakdown"]["runtime_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize("board", ["host", pytest.param("mps2-an386", marks=pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="qemu-system-arm / arm-none-eabi-gcc not installed"))])
def test_the_autoencoder_runs_bit_exact_on_the_native_backend(autoencoder, tmp_path, board):
    from edgekit.analyze import analyze
    from edgekit.build import build
    from edgekit.profile import profile_build
    from edgekit.tflite_model import load_tflite

    out = tmp_path / "b"
    result = build(autoencoder["path"], board, out, backend="native", quiet=True)
    assert result["manifest"]["arena_bytes"] == analyze(load_tflite(autoencoder["path"]))["native_arena_bytes"]
    np.savez(tmp_path / "x.npz", x=autoencoder["data"].x_test[:4])
    report = profile_build(out, data=tmp_path / "x.npz")
    assert report["max_abs_diff"] == 0 and report["task"] == "reconstruction"
    assert report["top1_agreement"] is None
