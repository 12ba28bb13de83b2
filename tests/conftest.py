"""Shared fixtures: where the MLPerf Tiny reference models are, and small real data sets.

The reference models are read in place from ../shared/models (never copied into the repository); tests that need
them skip, saying why, when that folder is absent.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models")) / "mlperf_tiny"

# The fully int8 MLPerf Tiny models: name -> path relative to mlperf_tiny/
INT8_MODELS = {
    "kws": "keyword_spotting/kws_ref_model.tflite",
    "vww": "visual_wake_words/vww_96_int8.tflite",
    "ic": "image_classification/pretrainedResnet_quant.tflite",
    "ic_large": "image_classification/pretrainedResnet_large_int8.tflite",
    "ad": "anomaly_detection/ad01_int8.tflite",
    "sww": "streaming_wakeword/str_ww_ref_model.tflite",
}

# The float Keras models: name -> path (a SavedModel folder for KWS)
FLOAT_MODELS = {
    "kws": "keyword_spotting/kws_ref_model",
    "vww": "visual_wake_words/vww_96.h5",
    "ic": "image_classification/pretrainedResnet.h5",
    "ad": "anomaly_detection/ad01.h5",
    "sww": "streaming_wakeword/str_ww_ref_model.h5",
}


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"MLPerf Tiny reference models not found at {SHARED_MODELS} (../shared/models is absent)")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def int8_model_path(shared_models):
    def path(name: str) -> Path:
        return shared_models / INT8_MODELS[name]

    return path


@pytest.fixture(scope="session")
def float_model_path(shared_models):
    def path(name: str) -> Path:
        return shared_models / FLOAT_MODELS[name]

    return path


@pytest.fixture(scope="session")
def digits():
    """(x_train, y_train, x_test, y_test) of scikit-learn's digits, x as (N, 8, 8, 1) float32 in [0, 1]."""
    from tests.digits import load_digits_split

    return load_digits_split()


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory):
    """A CNN trained on digits in this session, saved as .keras, with its data as an .npz next to it.

    Returns a dict: model (Keras), keras_path, npz_path (x_train, y_train, x_test, y_test), and the arrays.
    """
    import numpy as np

    from tests.digits import train_digits_cnn

    model, x_train, y_train, x_test, y_test = train_digits_cnn()
    folder = tmp_path_factory.mktemp("digits_cnn")
    keras_path = folder / "digits_cnn.keras"
    model.save(keras_path)
    npz_path = folder / "digits.npz"
    np.savez(npz_path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return {"model": model, "keras_path": keras_path, "npz_path": npz_path, "x_train": x_train,
            "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def digits_qemu_build(tmp_path_factory):
    """The digits CNN from Keras, quantized, built with the native backend for QEMU's mps2-an386 and profiled
    there (`build --flash --profile`, which also writes report.html): (folder, the build's --json document).
    Shared by the report and per-layer validation tests; the float .tflite is kept in the folder."""
    import json
    import shutil
    import subprocess
    import sys

    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("qemu-system-arm / arm-none-eabi-gcc not installed")
    root = tmp_path_factory.mktemp("digits-qemu")
    folder = root / "digits"
    digits = REPO / "examples" / "digits"
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(digits / "digits_cnn.keras"), "--data",
                           str(digits / "digits.npz"), "--board", "mps2-an386", "-o", str(folder), "--flash",
                           "--profile", "--runs", "5", "--json"], capture_output=True, text=True, cwd=root,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, json.loads(done.stdout)
