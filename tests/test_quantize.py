"""Full-int8 quantization on real data: the digits CNN, a float .tflite via ai-edge-quantizer, and every bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.reference import run_reference
from edgekit.tflite_model import parse_tflite

DYNAMIC_BATCH_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}


def assert_fully_int8(graph):
    """int8 input/output, every tensor int8 except int32 biases and RESHAPE shapes, no float anywhere."""
    assert [t.dtype for t in graph.input_tensors() + graph.output_tensors()] == ["int8", "int8"]
    allowed_int32 = set()
    for op in graph.operators:
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 2:
            allowed_int32.add(op.inputs[2])
        if op.opcode == "RESHAPE" and len(op.inputs) > 1:
            allowed_int32.add(op.inputs[1])
    for t in graph.tensors:
        assert t.dtype == "int8" or (t.dtype == "int32" and t.index in allowed_int32), (t.name, t.dtype)
    assert not DYNAMIC_BATCH_OPS & set(graph.opcodes)
    assert all(t.shape[0] == 1 for t in graph.input_tensors())


def tflm_accuracy(tflite_bytes, x, y):
    """int8 accuracy measured with TFLite Micro's own kernels (independent of the LiteRT path in the report)."""
    return float(np.mean(tflm_outputs(tflite_bytes, x)[0].argmax(axis=1) == y))


def tflm_outputs(tflite_bytes, x):
    """Float outputs of a fully int8 model run by TFLite Micro, input quantized the way a device would."""
    graph = parse_tflite(tflite_bytes)
    inp, out = graph.input_tensors()[0], graph.output_tensors()[0]
    q = np.clip(np.round(x / inp.scale[0]) + inp.zero_point[0], -128, 127).astype(np.int8)
    raw = run_reference(tflite_bytes, q[:, None])
    return (raw.astype(np.float32) - out.zero_point[0]) * out.scale[0], out.scale[0]


@pytest.fixture(scope="module")
def digits_int8(digits_cnn):
    from edgekit.quantize import quantize

    return quantize(digits_cnn["keras_path"], digits_cnn["npz_path"], quiet=True)


@pytest.mark.slow
def test_digits_cnn_quantizes_to_fully_int8_within_1_5_points(digits_int8, digits_cnn):
    graph = parse_tflite(digits_int8.tflite_bytes)
    assert_fully_int8(graph)
    assert "RESHAPE" in graph.opcodes  # the Flatten, as one op thanks to the fixed batch
    per_channel = [graph.tensors[op.inputs[1]] for op in graph.operators if op.opcode == "CONV_2D"]
    assert all(w.per_channel and w.scale.size == w.shape[0] for w in per_channel)

    x, y = digits_cnn["x_test"], digits_cnn["y_test"]
    float_accuracy = float(np.mean(digits_cnn["model"].predict(x, verbose=0).argmax(1) == y))
    int8_accuracy = tflm_accuracy(digits_int8.tflite_bytes, x, y)
    assert float_accuracy - int8_accuracy <= 0.015

    report = digits_int8.report
    assert report["float_accuracy"] == pytest.approx(float_accuracy)
    assert abs(report["int8_accuracy"] - int8_accuracy) <= 0.01  # LiteRT vs TFLite Micro may differ by an LSB
    assert report["int8_bytes"] == len(digits_int8.tflite_bytes) < report["float_bytes"] / 2.5
    assert report["cosine_similarity"] > 0.99 and report["eval_samples"] == len(x)
    layers = report["layers"]
    assert len(layers) == len(graph.operators)
    assert all(l["sqnr_db"] > 20 for l in layers)  # a healthy model: every layer well above the noise
    assert report["worst_layers"][0]["sqnr_db"] == min(l["sqnr_db"] for l in layers)


@pytest.mark.slow
def test_cli_json_plot_and_output(digits_cnn, tmp_path, capsys):
    out, png = tmp_path / "d.tflite", tmp_path / "layers.png"
    with pytest.raises(SystemExit) as done:
        main(["quantize", str(digits_cnn["keras_path"]), "--data", str(digits_cnn["npz_path"]), "-o", str(out),
              "--calibration-samples", "50", "--plot", str(png), "--json"])
    assert done.value.code == 0
    report = json.loads(capsys.readouterr().out)  # exactly one JSON document on stdout
    assert report["calibration_samples"] == 50
    for key in ("float_accuracy", "int8_accuracy", "float_bytes", "int8_bytes", "top1_agreement"):
        assert report[key] is not None
    assert out.read_bytes()[4:8] == b"TFL3" and len(out.read_bytes()) == report["int8_bytes"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_float_tflite_through_ai_edge_quantizer(digits_cnn):
    from edgekit.data import Dataset
    from edgekit.models import load_model
    from edgekit.quantize import _convert, quantize

    float_tflite = _convert(load_model(digits_cnn["keras_path"]).frozen_function())
    assert parse_tflite(float_tflite).input_tensors()[0].dtype == "float32"
    x_test, y_test = digits_cnn["x_test"], digits_cnn["y_test"]
    data = Dataset(digits_cnn["x_train"], digits_cnn["y_train"], x_test, y_test)
    from edgekit.models import LoadedModel

    result = quantize(LoadedModel(model=float_tflite, framework="tflite", name="digits_float"), data, quiet=True)
    assert result.report["method"].startswith("ai-edge-quantizer")
    assert_fully_int8(parse_tflite(result.tflite_bytes))
    assert result.report["float_accuracy"] - tflm_accuracy(result.tflite_bytes, x_test, y_test) <= 0.03
    assert result.report["layers"]  # cumulative per-tensor error, matched by name


@pytest.mark.slow
def test_mlperf_float_tflite_with_old_opcodes(shared_models):
    """ad01_fp32.tflite stores its ops in deprecated_builtin_code; the quantized model must still run on TFLM."""
    from edgekit.data import from_arrays
    from edgekit.quantize import quantize

    sample, _ = ad_inputs(shared_models)
    wide = lambda seed: np.random.default_rng(seed).uniform(-80, 20, (40, 640)).astype(np.float32)
    noisy = [sample + np.random.default_rng(i).normal(0, 0.5, sample.shape).astype(np.float32) for i in range(5)]
    # wide-range frames first, then 200 narrower ones: calibration must keep the whole range, not the latest
    data = from_arrays(np.concatenate([wide(0), *noisy]), x_test=wide(1))
    result = quantize(shared_models / "anomaly_detection/ad01_fp32.tflite", data, calibration_samples=240,
                      quiet=True)
    graph = parse_tflite(result.tflite_bytes)
    assert_fully_int8(graph)
    assert graph.opcodes == ["FULLY_CONNECTED"]
    assert result.report["cosine_similarity"] > 0.999  # a moving average of ranges gave 0.98 here


# ------------------------------------------------------------------------------------------------ bad inputs


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def assert_clean_failure(code, err, out_path, expected):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err
    assert not out_path.exists() and not list(out_path.parent.glob(f".{out_path.name}*"))


@pytest.fixture
def npz8(tmp_path, digits):
    path = tmp_path / "d8.npz"
    np.savez(path, x=digits[0][:40], y=digits[1][:40])
    return path


def test_missing_model(tmp_path, npz8, capsys):
    out = tmp_path / "o.tflite"
    code, _, err = run_cli(["quantize", str(tmp_path / "absent.keras"), "--data", str(npz8), "-o", str(out)], capsys)
    assert_clean_failure(code, err, out, "model file not found")


def test_not_a_model(tmp_path, npz8, capsys):
    bogus, out = tmp_path / "notes.h5", tmp_path / "o.tflite"
    bogus.write_text("these are my notes, not a model")
    code, _, err = run_cli(["quantize", str(bogus), "--data", str(npz8), "-o", str(out)], capsys)
    assert_clean_failure(code, err, out, "not a valid .h5 file")


def test_truncated_tflite(tmp_path, npz8, int8_model_path, capsys):
    cut, out = tmp_path / "cut.tflite", tmp_path / "o.tflite"
    cut.write_bytes(int8_model_path("kws").read_bytes()[:3000])
    code, _, err = run_cli(["quantize", str(cut), "--data", str(npz8), "-o", str(out)], capsys)
    assert_clean_failure(code, err, out, "truncated or corrupted")


@pytest.mark.slow
def test_weight_only_quantized_tflite_is_dequantized_then_quantized(tmp_path, shared_models, capsys):
    """int8 weights around float activations (ToyCar's dynamic-range model): made float, then fully int8."""
    from edgekit.quantize import run_tflite

    sample, noise = ad_inputs(shared_models)
    model = shared_models / "anomaly_detection/ToyCar_baseline_tf23/model_ToyCar_quant.tflite"
    data, out = tmp_path / "x.npz", tmp_path / "o.tflite"
    np.savez(data, x_train=np.concatenate([sample, noise]), x_test=sample)
    code, stdout, err = run_cli(["quantize", str(model), "--data", str(data), "-o", str(out), "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert "dequantized" in report["method"] and not err  # --json: no note, no calibration bar
    graph = parse_tflite(out.read_bytes())
    assert_fully_int8(graph)
    assert graph.opcodes == ["FULLY_CONNECTED"]
    assert report["cosine_similarity"] > 0.999  # against the weight-only model, on the real recording
    original = parse_tflite(model.read_bytes())
    for op, before in zip(graph.operators, original.operators):
        new, old = graph.tensors[op.inputs[1]], original.tensors[before.inputs[1]]
        assert new.data is not None  # inline in the flatbuffer, where TFLite Micro reads constants
        dequantized = lambda t: (t.data.astype(np.float64) - t.zero_point[:, None]) * t.scale[:, None]
        assert np.all(np.abs(dequantized(new) - dequantized(old)) <= new.scale[:, None] / 2 * 1.001)
    got, step = tflm_outputs(out.read_bytes(), sample)  # the device's arithmetic agrees with the report's
    assert np.max(np.abs(got - run_tflite(out.read_bytes(), sample))) <= step * 1.001


def test_float_model_without_data(tmp_path, shared_models, capsys):
    out = tmp_path / "o.tflite"
    code, _, err = run_cli(["quantize", str(shared_models / "anomaly_detection/ad01_fp32.tflite"), "-o", str(out)],
                           capsys)
    assert_clean_failure(code, err, out, "has float activations: calibration data is needed")


@pytest.mark.parametrize("array, expected", [
    (np.zeros((30, 5, 5), np.float32), "shape (5, 5) but the model expects input of shape (8, 8, 1)"),
    (np.array([["x"] * 64] * 30).reshape(30, 8, 8, 1), "dtype <U1"),
])
def test_calibration_data_not_matching_the_model(digits_cnn, tmp_path, capsys, array, expected):
    data, out = tmp_path / "bad.npy", tmp_path / "o.tflite"
    np.save(data, array)
    code, _, err = run_cli(["quantize", str(digits_cnn["keras_path"]), "--data", str(data), "-o", str(out)], capsys)
    assert_clean_failure(code, err, out, expected)


@pytest.mark.slow
def test_error_through_a_real_process(tmp_path):
    out = tmp_path / "o.tflite"
    done = subprocess.run([sys.executable, "-m", "edgekit", "quantize", str(tmp_path / "none.keras"), "--data",
                           str(tmp_path / "none.npz"), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: model file not found: {tmp_path / 'none.keras'}"
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sww", "kws"])  # a tf_keras fallback .h5 and a Keras SavedModel
def test_mlperf_float_models_quantize_to_fully_int8(float_model_path, name):
    """The data sets are not shipped, so the inputs are noise: this checks the conversion, not accuracy."""
    from edgekit.data import from_arrays
    from edgekit.models import load_model
    from edgekit.quantize import quantize

    loaded = load_model(float_model_path(name))
    x = np.random.default_rng(0).normal(size=(60, *loaded.input_shape)).astype(np.float32)
    result = quantize(loaded, from_arrays(x), calibration_samples=40, quiet=True)
    graph = parse_tflite(result.tflite_bytes)
    assert_fully_int8(graph)
    assert len(run_reference(result.tflite_bytes, [np.zeros(graph.input_tensors()[0].shape, np.int8)])) == 1
    assert result.report["framework"] == "tf_keras" and result.report["top1_agreement"] > 0.5


# ------------------------------------------------------------------ int8 inside, float ends (QUANTIZE/DEQUANTIZE)

FLOAT_ENDS = "anomaly_detection/ToyCar_baseline_tf23/model_ToyCar_quant_fullint.tflite"
AD_SAMPLE = "anomaly_detection/sample_input_normal_id_01_00000000_hist_librosa.bin"


def ad_inputs(shared_models):
    """The AD sample (40 frames of 640 float32 log-mel features, raw little-endian) and random frames."""
    sample = np.fromfile(shared_models / AD_SAMPLE, dtype="<f4").reshape(-1, 640)
    rng = np.random.default_rng(1)
    noise = rng.normal(sample.mean(), sample.std() * 2, size=(40, 640)).astype(np.float32)
    return sample, noise


def test_float_ends_removed_without_data(shared_models):
    from edgekit.quantize import REMOVED_FLOAT_IO, quantize, run_tflite

    original = (shared_models / FLOAT_ENDS).read_bytes()
    result = quantize(shared_models / FLOAT_ENDS, quiet=True)
    graph = parse_tflite(result.tflite_bytes)
    assert graph.is_fully_int8
    assert_fully_int8(graph)
    assert graph.opcodes == ["FULLY_CONNECTED"] and len(graph.operators) == 10
    before = parse_tflite(original)
    quantize_op, dequantize_op = before.operators[0], before.operators[-1]
    assert (quantize_op.opcode, dequantize_op.opcode) == ("QUANTIZE", "DEQUANTIZE")
    for new, old in ((graph.input_tensors()[0], before.tensors[quantize_op.outputs[0]]),
                     (graph.output_tensors()[0], before.tensors[dequantize_op.inputs[0]])):
        assert (new.name, new.shape, float(new.scale[0]), int(new.zero_point[0])) == \
            (old.name, old.shape, float(old.scale[0]), int(old.zero_point[0]))
    assert result.report["method"] == REMOVED_FLOAT_IO and result.report["eval_samples"] == 0
    assert result.report["top1_agreement"] is None

    for x in ad_inputs(shared_models):
        # TFLite Micro both times: float in and out through the original ends, then int8 in and out
        expected = run_reference(original, x[:, None])
        got, step = tflm_outputs(result.tflite_bytes, x)
        assert np.max(np.abs(got - expected)) <= step / 1000  # the same int8 arithmetic: identical codes
        assert np.max(np.abs(run_tflite(result.tflite_bytes, x) - run_tflite(original, x))) <= step * 1.001


def test_float_ends_cli_with_data_reports_agreement(shared_models, tmp_path, capsys):
    sample, _ = ad_inputs(shared_models)
    data, out = tmp_path / "ad.npy", tmp_path / "toycar_int8.tflite"
    np.save(data, sample)
    code, stdout, err = run_cli(["quantize", str(shared_models / FLOAT_ENDS), "--data", str(data), "-o", str(out),
                                 "--json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["eval_samples"] == len(sample) and report["calibration_samples"] == 0
    assert report["cosine_similarity"] > 0.9999 and report["max_abs_error"] <= report["output"]["scale"] * 1.001
    assert parse_tflite(out.read_bytes()).is_fully_int8 and report["int8_bytes"] == len(out.read_bytes())

    code, stdout, err = run_cli(["quantize", str(shared_models / FLOAT_ENDS), "-o", str(out)], capsys)
    assert code == 0 and "removed its float input/output QUANTIZE/DEQUANTIZE ops" in " ".join(err.split())
    assert "no data given" in stdout


@pytest.mark.slow
def test_float_ends_of_a_converted_cnn_with_signature(digits_cnn):
    """A CNN converted with int8 inside but float ends (several op kinds, a signature): its signature follows."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit._tf import tensorflow
    from edgekit.models import load_model
    from edgekit.quantize import _converter, _native_stderr_captured, _prepare_for_aeq, remove_float_io, run_tflite

    converter = _converter(load_model(digits_cnn["keras_path"]).frozen_function(), digits_cnn["x_train"][:50])
    converter.inference_input_type = converter.inference_output_type = tensorflow().float32
    with _native_stderr_captured():
        float_ends = _prepare_for_aeq(bytes(converter.convert()))  # adds a serving_default signature
    before = parse_tflite(float_ends)
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(before.opcodes) and not before.is_fully_int8
    int8 = remove_float_io(float_ends, "digits")
    graph = parse_tflite(int8)
    assert_fully_int8(graph)
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(graph.opcodes)
    assert len(graph.operators) == len(before.operators) - 2

    x = digits_cnn["x_test"][:100]
    got, step = tflm_outputs(int8, x)
    assert np.max(np.abs(got - run_reference(float_ends, x[:, None]).reshape(got.shape))) <= step / 1000
    assert np.max(np.abs(run_tflite(int8, x) - run_tflite(float_ends, x))) <= step * 1.001

    runner = Interpreter(model_content=int8).get_signature_runner("serving_default")
    (name, details), = runner.get_input_details().items()
    (out_name, out_details), = runner.get_output_details().items()
    assert details["dtype"] == out_details["dtype"] == np.int8
    q = np.clip(np.round(x[0] / details["quantization"][0]) + details["quantization"][1], -128, 127)
    raw = runner(**{name: q[None].astype(np.int8)})[out_name]
    assert np.array_equal(raw.reshape(-1), run_reference(int8, q[None, None].astype(np.int8))[0].reshape(-1))
