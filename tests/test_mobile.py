"""Phones and Linux boards: the LiteRT variants of the digits example (measured on its held-out data, chosen by
the board's rule), and the Android project's Kotlin constants checked against the model they ship."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgekit.boards import load_board

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"


@pytest.fixture(scope="module")
def android_build(tmp_path_factory):
    from edgekit.build import build

    out = tmp_path_factory.mktemp("mobile") / "digits-android"
    return out, build(DIGITS / "digits_cnn.keras", "android-arm64", out, data=DIGITS / "digits.npz", quiet=True)


def _kotlin_constants(path: Path) -> dict:
    """The companion object's constants, as Kotlin would read them."""
    text = path.read_text()
    values = {}
    for name, value in re.findall(r"(?:const )?val ([A-Z_]+) = (.+)", text):
        value = value.strip()
        if value.startswith("intArrayOf("):
            values[name] = [int(v) for v in value[len("intArrayOf("):-1].split(",")]
        elif value.startswith('"'):
            values[name] = value.strip('"')
        elif value.endswith("f"):
            values[name] = float(value[:-1])
        elif re.fullmatch(r"-?\d+", value):
            values[name] = int(value)
    return values


def _litert_io(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def _check_wrapper(kotlin: Path, model: bytes) -> dict:
    constants = _kotlin_constants(kotlin)
    for side, details in zip(("INPUT", "OUTPUT"), _litert_io(model)):
        assert constants[f"{side}_SHAPE"] == [int(d) for d in details["shape"]]
        assert constants[f"{side}_ELEMENTS"] == int(np.prod(details["shape"]))
        assert constants[f"{side}_TYPE"] == np.dtype(details["dtype"]).name
        scale, zero_point = details["quantization"]
        assert constants[f"{side}_SCALE"] == pytest.approx(scale, rel=1e-7)
        assert constants[f"{side}_ZERO_POINT"] == zero_point
    return constants


@pytest.mark.slow
def test_android_build_measures_variants_and_chooses_by_the_boards_rule(android_build):
    from edgekit.quantize import quantize

    out, result = android_build
    stage = next(s for s in result["stages"] if s["stage"] == "variants")
    rows = {row["variant"]: row for row in stage["variants"]}
    assert list(rows) == ["fp32", "fp16", "dynamic", "int8", "int8-float-io"]
    assert all(row["metric"] == "accuracy" and row["inputs"].startswith("held-out data") for row in rows.values())
    assert abs(rows["fp16"]["drop_points"]) <= 0.5  # the GPU's format costs (almost) nothing
    assert rows["fp16"]["bytes"] < 0.6 * rows["fp32"]["bytes"] and rows["int8"]["bytes"] < 0.35 * rows["fp32"]["bytes"]
    assert all(set(row["host_latency_ms"]) == {"1", "2"} and min(row["host_latency_ms"].values()) > 0
               for row in rows.values())

    # the int8 variant is edgekit quantize's model, with the same figures
    report = quantize(DIGITS / "digits_cnn.keras", DIGITS / "digits.npz", per_layer=False, quiet=True).report
    int8 = rows["int8"]
    assert int8["bytes"] == report["int8_bytes"]
    assert int8["value"] == report["int8_accuracy"] and int8["float_value"] == report["float_accuracy"]
    assert int8["cosine"] == pytest.approx(report["cosine_similarity"], abs=1e-12)
    assert (out / result["manifest"]["model"]).stat().st_size == report["int8_bytes"]

    # the rule: smallest within the board's tolerance, preferring the board's accelerator (GPU: fp32/fp16)
    board = load_board("android-arm64")
    tolerance = board.data["mobile"]["tolerance_points"]
    within = [r for r in rows.values() if r["drop_points"] <= tolerance]
    gpu = [r for r in within if "GPU delegate" in r["accelerators"]]
    assert stage["chosen"] == min(gpu or within, key=lambda r: r["bytes"])["variant"] == "fp16"
    assert "within 1 point(s) of float" in stage["rule"] and "GPU delegate" in stage["rule"]

    mobile = result["manifest"]["mobile"]
    assert mobile["chosen"] == "fp16" and set(mobile["projects"]) == {"android", "linux"}
    for row in mobile["variants"]:
        assert (out / row["file"]).stat().st_size == row["bytes"]


@pytest.mark.slow
def test_android_project_is_complete_and_its_wrapper_knows_the_model(android_build):
    out, result = android_build
    android = out / "android"
    for name in ("settings.gradle.kts", "build.gradle.kts", "app/build.gradle.kts",
                 "app/src/main/AndroidManifest.xml", "README.md"):
        assert (android / name).is_file(), name
    assert 'include(":app")' in (android / "settings.gradle.kts").read_text()
    gradle = (android / "app/build.gradle.kts").read_text()
    assert 'implementation("com.google.ai.edge.litert:litert:' in gradle and "litert-gpu" in gradle
    assert 'noCompress += "tflite"' in gradle and 'abiFilters += listOf("arm64-v8a")' in gradle
    assert ".BenchmarkActivity" in (android / "app/src/main/AndroidManifest.xml").read_text()
    asset = (android / "app/src/main/assets/model.tflite").read_bytes()
    chosen = out / result["manifest"]["mobile"]["chosen_file"]
    assert asset == chosen.read_bytes()
    kotlin = android / "app/src/main/kotlin/dev/edgekit/model"
    constants = _check_wrapper(kotlin / "EdgekitModel.kt", asset)  # fp16: float ends, no quantization
    assert constants["VARIANT"] == "fp16" and constants["INPUT_SCALE"] == 0.0
    assert "Accelerator.GPU" in (kotlin / "EdgekitModel.kt").read_text()
    assert "EdgekitModel(assets, accelerator)" in (kotlin / "BenchmarkActivity.kt").read_text()
    linux = (out / "linux/main.c").read_text()
    assert "TfLiteInterpreterInvoke" in linux and (out / "linux/model.tflite").read_bytes() == asset


def test_kotlin_wrapper_of_an_int8_model_carries_its_quantization(tmp_path, int8_model_path):
    from edgekit.codegen.litert import write_projects
    from edgekit.tflite_model import load_tflite

    graph = load_tflite(int8_model_path("kws"))
    written = write_projects(tmp_path, load_board("android-arm64"), graph, "int8", "given int8", str(tmp_path))
    assert set(written) == {"android", "linux"}
    kotlin = tmp_path / "android/app/src/main/kotlin/dev/edgekit/model/EdgekitModel.kt"
    constants = _check_wrapper(kotlin, graph.model_bytes)
    assert constants["INPUT_TYPE"] == "int8" and constants["INPUT_SCALE"] > 0
    text = kotlin.read_text()
    assert "writeInt8(quantize(input))" in text and "dequantize(outputBuffers[0].readInt8())" in text
    main = (tmp_path / "linux/main.c").read_text()
    assert f"#define INPUT_ZERO_POINT {constants['INPUT_ZERO_POINT']}" in main
