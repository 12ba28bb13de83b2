"""`edgekit analyze` on the MLPerf Tiny models and on models built here: work, memory, flash, fit, errors."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgekit.analyze import analyze
from edgekit.boards import load_board
from edgekit.memory_plan import plan_activations
from edgekit.tflite_model import load_tflite, parse_tflite

# Multiply-accumulates of conv, depthwise and fully connected layers (MLPerf Tiny's published figures).
PUBLISHED_MACS = {"kws": 2_656_768, "vww": 7_489_664, "ic": 12_501_632, "ad": 264_192, "sww": 826_368}


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(result, *words):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if "--json" in result.args:  # the error contract: the same error as one JSON object on stdout
        assert json.loads(result.stdout) == {"error": lines[0][len("error: "):], "kind": "input"}
    else:
        assert result.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def reports(int8_model_path):
    """analyze() of every int8 MLPerf Tiny model, without a board (one TFLite Micro run each)."""
    return {name: analyze(load_tflite(int8_model_path(name))) for name in [*PUBLISHED_MACS, "ic_large"]}


@pytest.mark.parametrize("name", list(PUBLISHED_MACS))
def test_macs_match_the_published_figures(reports, name):
    report = reports[name]
    assert report["macs"] == PUBLISHED_MACS[name]
    assert report["macs"] == sum(layer["macs"] for layer in report["layers"])
    assert report["fits"] is None and report["board"] is None


@pytest.mark.parametrize("name", [*PUBLISHED_MACS, "ic_large"])
def test_tflm_arena_is_measured_and_consistent(reports, name):
    report = reports[name]
    arena = report["tflm_arena"]
    assert report["int8"] is True and report["notes"] == []
    assert report["tflm_arena_bytes"] == arena["total_bytes"] == arena["head_bytes"] + arena["tail_bytes"]
    # The head holds the activations: at least the largest single tensor of the model.
    largest = max(b["size"] for b in report["memory_plan"]["buffers"])
    assert arena["head_bytes"] >= largest
    # The 32-bit estimate only shrinks pointer-sized structures of the tail.
    assert arena["head_bytes"] < report["tflm_arena_bytes_32bit"] < report["tflm_arena_bytes"]
    assert arena["tail_bytes_32bit"] >= arena["categories"]["Persistent buffer data"]


def test_other_ops_are_counted_apart_from_macs(reports):
    kws = {layer["op"]: layer for layer in reports["kws"]["layers"]}
    pool = kws["AVERAGE_POOL_2D"]  # 25x5 window over 64 channels -> 1x1x64
    assert pool["macs"] == 0 and pool["other_ops"] == 25 * 5 * 64
    assert kws["RESHAPE"]["macs"] == kws["RESHAPE"]["other_ops"] == kws["RESHAPE"]["activation_bytes"] == 0
    assert reports["ad"]["other_ops"] == 0  # only fully connected layers
    ic_adds = [layer for layer in reports["ic"]["layers"] if layer["op"] == "ADD"]
    assert ic_adds and all(layer["other_ops"] == int(np.prod(layer["output_shape"])) for layer in ic_adds)


def test_params_and_weights_come_from_the_constant_tensors(int8_model_path, reports):
    graph = load_tflite(int8_model_path("ad"))
    # ad01: 640-128-128-128-128-8-128-128-128-128-640 fully connected with biases
    sizes = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    expected = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    assert reports["ad"]["params"] == expected
    assert reports["ad"]["weights_bytes"] == sum(t.nbytes for t in graph.tensors if t.is_constant)
    kws = reports["kws"]  # the RESHAPE's int32 target shape is not a parameter
    assert kws["params"] == sum(layer["params"] for layer in kws["layers"])
    assert kws["weights_bytes"] == sum(layer["weights_bytes"] for layer in kws["layers"]) + 2 * 4


@pytest.mark.parametrize("name", ["kws", "vww", "ic"])
def test_memory_plan_never_overlaps_live_tensors(int8_model_path, name):
    graph = load_tflite(int8_model_path(name))
    plan = plan_activations(graph)
    buffers = plan.buffers
    for i, a in enumerate(buffers):
        assert a.offset % 16 == 0
        for b in buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last:  # alive at the same time
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    assert plan.peak_bytes >= max(plan.live_bytes_per_operator())
    for op in graph.operators:  # every activation an operator touches has a place
        for t in op.inputs + op.outputs:
            if t >= 0 and not graph.tensors[t].is_constant:
                assert plan.offset_of(t) + graph.tensors[t].nbytes <= plan.peak_bytes


def test_memory_plan_reaches_the_lower_bound_where_tflite_micro_does_not(reports):
    """No plan can use less than the bytes alive at the busiest operator; ours gets there on every model."""
    for name, report in reports.items():
        busiest = max(layer["live_bytes"] for layer in report["layers"])
        assert report["peak_activation_bytes"] == busiest, name
    vww = reports["vww"]  # TFLite Micro's largest-first order alone leaves a hole in MobileNet's plan
    assert vww["peak_activation_bytes"] < vww["tflm_arena"]["head_bytes"]


def test_board_fit_margins_and_backends(int8_model_path):
    graph = load_tflite(int8_model_path("vww"))
    board = load_board("nucleo-l4r5zi")
    tflm = analyze(graph, board=board, backend="tflm")
    native = analyze(graph, board=board, backend="native")
    assert tflm["fits"] is True and native["fits"] is True
    for report in (tflm, native):
        for key, limit in (("ram", board.ram_bytes), ("flash", board.flash_bytes)):
            budget = report[key]
            assert budget["available_bytes"] == limit
            assert budget["margin_bytes"] == limit - budget["needed_bytes"] > 0
    scratch = tflm["ram_breakdown"]["kernel_scratch_bytes"]
    assert 0 < scratch < tflm["peak_activation_bytes"]  # CMSIS-NN's im2col buffers on this Arm board
    assert tflm["ram"]["needed_bytes"] == (tflm["tflm_arena_bytes_32bit"] + scratch
                                           + board.runtime_ram_estimate("tflm"))
    # the native backend's real arena (its planner: input kept for the protocol, in place where kernels allow)
    assert native["ram"]["needed_bytes"] == native["native_arena_bytes"] + board.runtime_ram_estimate("native")
    assert tflm["flash_bytes"] == tflm["model_bytes"] + board.runtime_flash_estimate("tflm")
    # the native backend's constants in its kernels' layouts (int16 weights for the SIMD loops), not the int8 ones
    assert native["flash_bytes"] == native["native_constant_bytes"] + board.runtime_flash_estimate("native")
    assert native["native_constant_bytes"] > native["weights_bytes"]
    esp32 = analyze(graph, board=load_board("esp32"))  # the app partition is the limit, not the 4 MB chip
    assert esp32["flash"]["available_bytes"] == load_board("esp32").flash["app_partition_bytes"] == 1_048_576
    host = analyze(graph, board=load_board("host"))  # a 64-bit target keeps the measured arena
    assert host["ram_bytes"] == host["tflm_arena_bytes"]  # and its reference kernels need no scratch


def test_a_model_that_does_not_fit_says_by_how_much_and_what_helps(int8_model_path):
    graph = load_tflite(int8_model_path("ic_large"))
    real = load_board("disco-f746ng")  # has 8 MB of external SDRAM
    small = replace(real, name="tiny", ram_bytes=96 * 1024, flash_bytes=512 * 1024)
    report = analyze(graph, board=small)
    assert report["fits"] is False
    assert report["ram"]["fits"] is False and report["flash"]["fits"] is False
    ram_short = report["ram"]["needed_bytes"] - small.ram_bytes
    assert report["ram"]["margin_bytes"] == -ram_short
    tips = " | ".join(report["suggestions"])
    assert "PSRAM" in tips
    # The pruning ratio offered for flash is enough, and one point less would not be.
    flash_short = report["flash"]["needed_bytes"] - small.flash_bytes
    percent = int(tips.split("prune at least ")[1].split("%")[0])
    assert report["weights_bytes"] * percent / 100 >= flash_short > report["weights_bytes"] * (percent - 1) / 100
    # The suggested smaller input brings the activations under what the board leaves for them.
    side = int(tips.split("smaller input of about ")[1].split("x")[0])
    assert 0 < side < 32
    without_psram = analyze(graph, board=replace(small, psram_bytes=0))
    assert "PSRAM" not in " | ".join(without_psram["suggestions"])


def test_cli_json_is_one_document_with_the_promised_keys(int8_model_path, tmp_path):
    result = run_cli("analyze", int8_model_path("kws"), "--board", "nucleo-l4r5zi", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("macs", "params", "tflm_arena_bytes", "peak_activation_bytes", "flash_bytes", "fits", "layers",
                "ram", "flash"):
        assert key in report
    assert report["macs"] == PUBLISHED_MACS["kws"] and report["fits"] is True
    assert [layer["op"] for layer in report["layers"]][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert report["ram"]["margin_bytes"] > 0 and report["flash"]["margin_bytes"] > 0
    no_board = json.loads(run_cli("analyze", int8_model_path("kws"), "--json").stdout)
    assert no_board["fits"] is None and no_board["ram"] is None


def test_cli_human_output_and_plot(int8_model_path, tmp_path):
    picture = tmp_path / "plan.png"
    result = run_cli("analyze", int8_model_path("ic"), "--board", "rpi-pico", "--plot", picture)
    assert result.returncode == 0, result.stderr
    assert "12,501,632" in result.stdout and "fits on rpi-pico" in result.stdout
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert [p.name for p in tmp_path.iterdir()] == ["plan.png"]  # no temporary left behind


@pytest.mark.slow
def test_float_tflite_built_here_is_analysed_with_a_note(tmp_path):
    """A Keras model whose MACs are known by construction, converted to a float .tflite."""
    from edgekit._tf import keras, tensorflow

    k = keras()
    model = k.Sequential([k.Input((8, 8, 1)), k.layers.Conv2D(8, 3, padding="same", activation="relu"),
                          k.layers.DepthwiseConv2D(3, padding="valid"), k.layers.MaxPooling2D(2),
                          k.layers.Flatten(), k.layers.Dense(10)])
    rng = np.random.default_rng(0)  # non-zero biases: the converter drops or shares all-zero ones
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    path = tmp_path / "tiny_float.tflite"
    path.write_bytes(tensorflow().lite.TFLiteConverter.from_keras_model(model).convert())
    report = analyze(load_tflite(path), board=load_board("mps2-an386"))
    conv, depthwise, dense = 8 * 8 * 8 * 9, 6 * 6 * 8 * 9, 3 * 3 * 8 * 10
    assert report["macs"] == conv + depthwise + dense
    assert report["params"] == (9 * 8 + 8) + (9 * 8 + 8) + (72 * 10 + 10)
    pool = next(layer for layer in report["layers"] if layer["op"] == "MAX_POOL_2D")
    assert pool["other_ops"] == 3 * 3 * 8 * 4
    assert report["int8"] is False and any("not a fully int8 model" in n for n in report["notes"])
    assert report["tflm_arena_bytes"] > 0 and report["fits"] is True

    import tf_keras  # the converter fuses a tf_keras LSTM into one UNIDIRECTIONAL_SEQUENCE_LSTM operator

    lstm = tf_keras.Sequential([tf_keras.Input((5, 3), batch_size=1), tf_keras.layers.LSTM(4),
                                tf_keras.layers.Dense(2)])
    graph = parse_tflite(tensorflow().lite.TFLiteConverter.from_keras_model(lstm).convert(), "lstm")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in graph.opcodes
    # 5 time steps x 4 gates x 4 units x (3 inputs + 4 recurrent), then the 4 -> 2 dense layer
    assert analyze(graph)["macs"] == 5 * 4 * 4 * (3 + 4) + 4 * 2


def test_cli_errors_are_one_line(int8_model_path, tmp_path):
    missing = tmp_path / "missing.tflite"
    assert_one_line_error(run_cli("analyze", missing), "not found", "missing.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("not a model at all\n")
    assert_one_line_error(run_cli("analyze", text), "not a TFLite flatbuffer")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(int8_model_path("kws").read_bytes()[:20_000])
    assert_one_line_error(run_cli("analyze", truncated), "truncated or corrupted")
    assert_one_line_error(run_cli("analyze", tmp_path), "folder")
    unknown = run_cli("analyze", int8_model_path("kws"), "--board", "esp64")
    assert_one_line_error(unknown, "unknown board 'esp64'", "nucleo-l4r5zi", "mps2-an386", "esp32s3")
    bad_plot = run_cli("analyze", int8_model_path("kws"), "--plot", tmp_path / "plan.txt")
    assert_one_line_error(bad_plot, "plan.txt", ".png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tflite", "truncated.tflite"]


def test_corrupted_model_that_crashes_tflite_micro_is_one_line(int8_model_path, tmp_path):
    """An output shape far larger than the file's weights make TFLite Micro's C++ crash; edgekit survives it."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    source = int8_model_path("ad").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(source, 0))
    first = model.subgraphs[0].operators[0]
    model.subgraphs[0].tensors[first.outputs[0]].shape = np.array([1, 1_000_000], dtype=np.int32)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(bytes(builder.Output()))
    parse_tflite(broken.read_bytes())  # still a readable flatbuffer: the crash is TFLite Micro's
    assert_one_line_error(run_cli("analyze", broken, "--json"), "TFLite Micro crashed", "corrupted")


def test_unknown_backend_is_a_clear_error(int8_model_path):
    from edgekit.errors import EdgekitError

    with pytest.raises(EdgekitError, match="unknown backend 'cmsis'; expected one of: tflm, native"):
        analyze(load_tflite(int8_model_path("ad")), backend="cmsis")


def test_fail_if_not_fits_exits_with_the_verdict_after_the_json(shared_models, tmp_path):
    """CI's gate: the float ResNet (1.9 MB) does not fit the nRF52840's 1 MB of flash; the report is still the
    one JSON document on stdout, the verdict one line on stderr and the exit status 3."""
    large = shared_models / "image_classification" / "pretrainedResnet_large_float.tflite"
    result = run_cli("analyze", large, "--board", "nrf52840dk", "--fail-if-not-fits", "--json",
                     cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["fits"] is False and report["flash"]["fits"] is False
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {report['model']} does not fit nrf52840dk with the tflm backend (--fail-if-not-fits)")
    # the bundled example fits: exit 0, and the flag alone (no --board) is a usage error
    fits = run_cli("analyze", REPO_EXAMPLE, "--board", "nrf52840dk", "--fail-if-not-fits", cwd=tmp_path)
    assert fits.returncode == 0 and "fits on nrf52840dk" in fits.stdout, fits.stderr
    alone = run_cli("analyze", REPO_EXAMPLE, "--fail-if-not-fits", cwd=tmp_path)
    assert alone.returncode == 2 and "--fail-if-not-fits needs --board" in alone.stderr


REPO_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "digits_int8.tflite"


def test_layers_carry_keras_names_from_the_converters_tensor_names():
    """The bundled example's operators are named after the Keras model's layers (Keras 3's '_1' scope suffix
    dropped when the layer names are known); the final SOFTMAX is the last Dense layer's activation."""
    from edgekit.layer_names import operator_layers

    graph = load_tflite(REPO_EXAMPLE)
    keras_names = ["conv2d_3", "conv2d_4", "max_pooling2d_1", "conv2d_5", "flatten_1", "dense_2", "dense_3"]
    assert operator_layers(graph, keras_names) == ["conv2d_3", "conv2d_4", "max_pooling2d_1", "conv2d_5",
                                                   "flatten_1", "dense_2", "dense_3", "dense_3"]
    rows = analyze(graph)["layers"]
    assert [r["layer"] for r in rows][:2] == ["conv2d_3_1", "conv2d_4_1"]  # without them: the scope as it is


def test_keras_names_of_mlperf_vww_pick_the_layer_doing_the_work(int8_model_path):
    """A fused CONV_2D's tensor name lists its activation, batch norm and (shared constants) other layers: the
    layer named is the convolution's."""
    from edgekit.layer_names import operator_layers

    graph = load_tflite(int8_model_path("vww"))
    names = operator_layers(graph)
    assert names[:4] == ["conv2d", "depthwise_conv2d", "conv2d_1", "depthwise_conv2d_1"]
    assert names[-4:] == ["average_pooling2d", "flatten", "dense", "dense"]
