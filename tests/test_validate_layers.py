"""`edgekit profile --validate-layers` on the digits example in QEMU: every layer's int8 output from the device
(ek-layer-out), against TFLite Micro's intermediate tensors and the float model's; and a deliberately corrupted
kernel build (-DEK_TEST_CORRUPT_LAYER=3, a test-only define that flips one byte of layer 3's output) is caught at
the right layer."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
pytestmark = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-arm / arm-none-eabi-gcc not installed")


def run_cli(*args, cwd=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def digits_folder(digits_qemu_build):
    """The digits CNN from Keras, built for QEMU's mps2-an386 with the native backend (the float .tflite kept)."""
    return digits_qemu_build[0]


def validate(folder):
    done = run_cli("profile", folder, "--runs", "3", "--data", DIGITS / "digits.npz", "--validate-layers", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["layer_validation"]


@pytest.mark.slow
def test_every_layer_matches_the_reference_and_stays_close_to_the_float_model(digits_folder):
    manifest = json.loads((digits_folder / "edgekit-build.json").read_text())
    assert (digits_folder / manifest["float_model"]).is_file()
    v = validate(digits_folder)
    layers = v["layers"]
    # the native backend runs 7 layers (the Flatten is a view), each named after its Keras layer
    assert [row["layer"] for row in layers] == ["conv2d_3", "conv2d_4", "max_pooling2d_1", "conv2d_5", "dense_2",
                                                "dense_3", "dense_3"]
    assert v["samples"] == 3 and v["first_divergent"] is None
    for row in layers:  # bit-exact with TFLite Micro, layer by layer
        assert row["reference"]["max_abs_diff"] == 0 and row["reference"]["cos"] == pytest.approx(1.0)
        assert row["float"]["cos"] > 0.999, row  # int8 is close to the float model at every layer
    assert v["float_model"] == manifest["float_model"]
    assert json.loads((digits_folder / "edgekit-validate.json").read_text())["layers"][0]["op"] == "CONV_2D"


@pytest.mark.slow
def test_a_corrupted_kernel_build_is_caught_at_its_layer(digits_folder, tmp_path):
    from edgekit.platforms.make import compile_project

    corrupted = tmp_path / "corrupted"
    shutil.copytree(digits_folder, corrupted)
    manifest = json.loads((corrupted / "edgekit-build.json").read_text())
    compile_project(corrupted, manifest["board"], defines=["EK_TEST_CORRUPT_LAYER=3"])
    v = validate(corrupted)
    first = v["first_divergent"]
    assert first["index"] == 3 and first["layer"] == "conv2d_5" and first["op"] == "CONV_2D"
    assert first["max_abs_diff"] > v["diverge_steps"]
    assert all(row["reference"]["max_abs_diff"] == 0 for row in v["layers"][:3])
    done = run_cli("profile", corrupted, "--runs", "1", "--validate-layers")
    assert "first layer that diverges from the reference: 3 conv2d_5 (CONV_2D)" in done.stdout, done.stdout
