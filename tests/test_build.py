"""`edgekit build`: the pipeline on real models, its refusals, its manifest, and the CLI's JSON."""

import hashlib
import importlib.util
import json
import subprocess
import sys

import pytest

from edgekit.build import build
from edgekit.errors import EdgekitError, UsageError

NATIVE_AVAILABLE = importlib.util.find_spec("edgekit.codegen.native") is not None


def test_vww_fits_rpi_pico_and_the_manifest_says_everything(int8_model_path, tmp_path):
    model = int8_model_path("vww")
    out = tmp_path / "vww-pico"
    result = build(model, "rpi-pico", out, compile=False)
    manifest = json.loads((out / "edgekit-build.json").read_text())
    assert manifest == result["manifest"]
    assert manifest["board"] == "rpi-pico" and manifest["backend"] == "tflm" and manifest["project"] == "pico-sdk"
    copied = out / manifest["model"]
    assert copied.read_bytes() == model.read_bytes()
    assert manifest["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert manifest["ops"] == ["AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE",
                               "SOFTMAX"]
    assert manifest["input"]["shape"] == [1, 96, 96, 3] and manifest["input"]["dtype"] == "int8"
    assert manifest["output"]["shape"] == [1, 2]
    assert manifest["arena_bytes"] + 8192 <= 270_336  # arena + runtime within the RP2040's 264 KB
    assert manifest["runner"] == "uf2" and manifest["firmware"] is None
    assert result["analysis"]["fits"] is True


def test_arena_larger_than_ram_is_refused_with_numbers_and_no_folder(int8_model_path, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(EdgekitError) as error:
        build(int8_model_path("vww"), "nrf52840dk", out, arena_bytes=400_000, compile=False)
    message = str(error.value)
    assert "262,144" in message and "400,000" in message and "short" in message
    assert not out.exists()


def test_flash_too_small_is_refused_with_a_suggestion(int8_model_path, tmp_path):
    # ic_large: 512 KB of flatbuffer + the Arduino core does not fit... any board? check the real numbers
    from edgekit.analyze import analyze
    from edgekit.boards import load_board
    from edgekit.tflite_model import load_tflite

    graph = load_tflite(int8_model_path("ic_large"))
    board = load_board("esp32")
    report = analyze(graph, board, "tflm")
    out = tmp_path / "ic-large"
    if report["fits"]:
        build(int8_model_path("ic_large"), "esp32", out, compile=False)
        assert (out / "edgekit-build.json").is_file()
    else:
        with pytest.raises(EdgekitError, match="does not fit esp32"):
            build(int8_model_path("ic_large"), "esp32", out, compile=False)
        assert not out.exists()


def test_esp32s3_puts_a_big_arena_in_psram(int8_model_path, tmp_path):
    out = tmp_path / "s3"
    result = build(int8_model_path("kws"), "esp32s3", out, arena_bytes=400_000, compile=False)
    assert result["manifest"]["arena_in_psram"] is True
    assert "#define EK_ARENA_IN_EXTERNAL_RAM 1" in (out / "main" / "model_settings.h").read_text()


def test_usage_errors(int8_model_path, tmp_path):
    with pytest.raises(UsageError, match="apply to the tflm backend"):  # tflm on host needs no refusal any more
        build(int8_model_path("ad"), "host", tmp_path / "x", backend="native", tflm_kernels="cmsis-nn")
    with pytest.raises(EdgekitError, match="unknown board"):
        build(int8_model_path("ad"), "no-such-board", tmp_path / "x")
    with pytest.raises(EdgekitError, match="not found"):
        build(tmp_path / "missing.tflite", "esp32", tmp_path / "x")
    with pytest.raises(UsageError, match="--arena-bytes"):
        build(int8_model_path("ad"), "host", tmp_path / "x", backend="native", arena_bytes=1000)
    assert not (tmp_path / "x").exists()


def test_native_backend_on_the_host_board(int8_model_path, tmp_path):
    out = tmp_path / "native"
    if not NATIVE_AVAILABLE:
        with pytest.raises(EdgekitError, match="stage native codegen not available"):
            build(int8_model_path("ad"), "host", out)
        assert not out.exists()
        return
    result = build(int8_model_path("ad"), "host", out)
    manifest = result["manifest"]
    assert manifest["backend"] == "native" and manifest["firmware"]
    assert (out / manifest["firmware"]).is_file() and manifest["sizes"]["text"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not NATIVE_AVAILABLE, reason="the native backend generator has not landed")
def test_flash_and_profile_chain_on_the_host_board(int8_model_path, tmp_path):
    result = build(int8_model_path("ad"), "host", tmp_path / "chain", flash=True, profile=True, runs=3)
    assert result["flash"]["runner"] == "host"
    assert result["profile"] is not None


def test_cli_json_is_one_document(int8_model_path, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(int8_model_path("kws")), "--board",
                           "nucleo-l4r5zi", "-o", str(out), "--no-compile", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["manifest"]["project"] == "cmake-arm"
    assert [s["stage"] for s in document["stages"]] == ["quantize", "analyze", "generate", "compile"]
    refused = subprocess.run([sys.executable, "-m", "edgekit", "build", str(int8_model_path("kws")), "--board",
                              "nrf52840dk", "--arena-bytes", "999999", "-o", str(tmp_path / "no")],
                             capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.strip().startswith("error: ") and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_keras_model_is_quantized_then_built(digits_cnn, tmp_path):
    out = tmp_path / "digits"
    result = build(digits_cnn["keras_path"], "arduino-nano33ble", out, data=digits_cnn["npz_path"], compile=False)
    manifest = result["manifest"]
    assert [s["stage"] for s in result["stages"]][:2] == ["quantize", "analyze"]
    assert manifest["input"]["dtype"] == "int8" and manifest["input"]["shape"][1:] == [8, 8, 1]
    sketch = out / manifest["build_hint"].split()[-1]
    assert (sketch / f"{sketch.name}.ino").is_file()
    with pytest.raises(UsageError, match="--data"):
        build(digits_cnn["keras_path"], "esp32", tmp_path / "nodata")


def test_an_uncompiled_project_says_how_to_build_and_flash_it(int8_model_path, tmp_path):
    out = tmp_path / "pico"
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(int8_model_path("ad")), "--board",
                           "rpi-pico", "-o", str(out), "--no-compile"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "edgekit-build.json").read_text())
    assert manifest["firmware"] is None and manifest["expected_firmware"] == "build/edgekit_ad01_int8.uf2"
    note = " ".join(done.stderr.split())
    assert f"`edgekit flash {out}` puts build/edgekit_ad01_int8.uf2 on the board" in note


def test_tflite_int8_inside_with_float_ends_is_built_as_fully_int8(shared_models, tmp_path):
    """MLPerf's ToyCar 'fullint' file has float input/output around an int8 graph: build drops the boundary ops."""
    from edgekit.tflite_model import load_tflite

    source = shared_models / "anomaly_detection/ToyCar_baseline_tf23/model_ToyCar_quant_fullint.tflite"
    assert not load_tflite(source).is_fully_int8
    result = build(source, "host", tmp_path / "toycar", compile=False)
    built = load_tflite(tmp_path / "toycar" / result["manifest"]["model"])
    assert built.is_fully_int8
    assert "QUANTIZE" not in built.opcodes and "DEQUANTIZE" not in built.opcodes
    assert result["manifest"]["input"]["dtype"] == "int8"
