"""Recurrent Keras models with their default settings: quantize -> build -> profile, bit-exact.

Keras' default LSTM and GRU used to segfault the converter's calibrator (a WHILE loop's freed pass-through
output, tensorflow/tensorflow#75140). Now an LSTM becomes TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM (int8
activations, int16 cell state) and a GRU is unrolled at conversion time; both are one subgraph, fully integer
and the same bytes on every run. The native backend has no sequence-LSTM kernel yet (and the unrolled GRU needs
SPLIT/SUB/STRIDED_SLICE, which the ops work adds), so these run on the TFLite Micro backend when a tree is given
(TFLM_DIR), and skip saying so otherwise.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.tflm_library import is_tree

pytestmark = pytest.mark.slow

STEPS, FEATURES = 12, 4


def _sequences(count: int, seed: int):
    """Two classes: a rising or a falling ramp under noise (what a recurrent layer must integrate over time)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count)
    ramp = np.linspace(-1, 1, STEPS)[None, :, None] * np.where(y == 1, 1.0, -1.0)[:, None, None]
    x = ramp + rng.normal(scale=0.5, size=(count, STEPS, FEATURES))
    return x.astype(np.float32), y


def _trained(layer_name: str):
    import keras

    keras.utils.set_random_seed(0)
    layer = getattr(keras.layers, layer_name)(8)  # Keras' defaults: tanh/sigmoid, no unroll, use_cudnn="auto"
    model = keras.Sequential([keras.Input((STEPS, FEATURES)), layer, keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _sequences(256, seed=1)
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def recurrent_models(tmp_path_factory):
    from edgekit.data import from_arrays
    from edgekit.quantize import quantize

    folder = tmp_path_factory.mktemp("recurrent")
    x, y = _sequences(160, seed=2)
    data = from_arrays(x, y, input_shape=(STEPS, FEATURES), output_shape=(2,))
    out = {}
    for name in ("LSTM", "GRU"):
        model = _trained(name)
        result = quantize(model, data, calibration_samples=64, quiet=True)
        path = folder / f"{name.lower()}.tflite"
        path.write_bytes(result.tflite_bytes)
        again = quantize(model, data, calibration_samples=64, per_layer=False, quiet=True)
        out[name] = {"path": path, "report": result.report, "again": again.tflite_bytes, "data": data}
    return out


def test_a_default_lstm_is_one_fused_integer_sequence_lstm(recurrent_models):
    from edgekit.tflite_model import load_tflite

    entry = recurrent_models["LSTM"]
    graph = load_tflite(entry["path"])
    assert graph.num_subgraphs == 1 and "UNIDIRECTIONAL_SEQUENCE_LSTM" in graph.opcodes
    assert graph.is_fully_int8
    lstm = next(op for op in graph.operators if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    cell_state = graph.tensors[lstm.inputs[19]]  # TFLite's input 19: the cell state, int16 in the integer kernel
    assert cell_state.dtype == "int16"
    report = entry["report"]
    assert report["int8_accuracy"] > 0.9 and abs(report["accuracy_drop_points"]) <= 2.0
    assert entry["path"].read_bytes() == entry["again"]  # the same bytes on every run


def test_a_default_gru_is_unrolled_into_one_integer_graph(recurrent_models):
    from edgekit.tflite_model import load_tflite

    entry = recurrent_models["GRU"]
    graph = load_tflite(entry["path"])
    assert graph.num_subgraphs == 1 and "WHILE" not in graph.opcodes and graph.is_fully_int8
    assert entry["report"]["int8_accuracy"] > 0.9
    assert entry["path"].read_bytes() == entry["again"]


def _tree() -> Path:
    path = os.environ.get("TFLM_DIR")
    if not path or not is_tree(path):
        pytest.skip("set TFLM_DIR to a TFLite Micro tree (the native backend has no UNIDIRECTIONAL_SEQUENCE_LSTM "
                    "kernel yet, and the unrolled GRU needs SPLIT/SUB/STRIDED_SLICE from the ops work)")
    return Path(path)


# Known disagreement, kept visible: on this LSTM with real data the TFLite Micro tree (pinned 90b983c2b) and the
# tflite-micro wheel edgekit's reference runs (0.dev20261023) differed by one int8 step (random int8 inputs agreed):
# reported as XFAIL/XPASS, not hidden.
LSTM_VERSIONS = pytest.mark.xfail(strict=False, reason="TFLite Micro tree vs tflite-micro wheel: one int8 step "
                                  "apart on UNIDIRECTIONAL_SEQUENCE_LSTM outputs (models.md)")
# The tflm backend sizes the arena from the wheel's interpreter; the tree's needs more for the unrolled GRU's
# ~300 operators (AllocateTensors fails: 'init failed: 4'), so the GRU build is given room explicitly.
GRU_ARENA_BYTES = 400_000


@pytest.mark.parametrize("name, board", [
    pytest.param("LSTM", "host", marks=LSTM_VERSIONS), ("GRU", "host"),
    pytest.param("LSTM", "mps2-an386", marks=[LSTM_VERSIONS, pytest.mark.skipif(
        not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")),
        reason="qemu-system-arm / arm-none-eabi-g++ not installed")]),
])
def test_recurrent_models_run_bit_exact_on_tflite_micro(recurrent_models, tmp_path, monkeypatch, name, board):
    from edgekit.build import build
    from edgekit.profile import profile_build

    tree = _tree()
    if os.environ.get("EDGEKIT_CACHE"):
        monkeypatch.setenv("EDGEKIT_CACHE", os.environ["EDGEKIT_CACHE"])
    entry = recurrent_models[name]
    out = tmp_path / "build"
    build(entry["path"], board, out, backend="tflm", tflm_dir=tree, quiet=True,
          arena_bytes=GRU_ARENA_BYTES if name == "GRU" else None)
    x = entry["data"].x_test[:4]
    np.savez(tmp_path / "x.npz", x=x, y=entry["data"].y_test[:4])
    report = profile_build(out, data=tmp_path / "x.npz")
    assert report["max_abs_diff"] == 0 and report["top1_agreement"] == 1.0
    assert report["task"] == "classification" and report["accuracy"] is not None


def test_a_converter_crash_is_one_line_and_writes_nothing(tmp_path):
    """A real segfault: a layer whose while-loop passes its input through (tensorflow/tensorflow#75140)."""
    import keras

    from edgekit.data import from_arrays
    from edgekit.errors import EdgekitError
    from edgekit.quantize import quantize
    from tests.while_layer import WhileLoop

    model = keras.Sequential([keras.Input((8,)), WhileLoop(), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    with pytest.raises(EdgekitError) as error:
        quantize(model, from_arrays(x, input_shape=(8,)), calibration_samples=20, quiet=True)
    message = str(error.value)
    assert message.startswith("the TFLite converter crashed (SIGSEGV) while quantizing") and "\n" not in message
