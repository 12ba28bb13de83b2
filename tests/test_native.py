"""The native backend: generated C, compiled for the host, gives exactly TFLite Micro's int8 outputs.

Each model is generated and compiled once per session with templates/native/test_main.c (input bytes on stdin,
output bytes on stdout, many samples per process) and compared with edgekit.reference.run_reference.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgekit.codegen.native import generate_native_model, unsupported_reasons
from edgekit.errors import EdgekitError
from edgekit.memory_plan import plan_activations
from edgekit.reference import run_reference, tflm_arena_usage
from edgekit.resources import templates_dir
from edgekit.tflite_model import load_tflite, parse_tflite

HOST_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
ARM_FLAGS = ["-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-Wall",
             "-Wextra", "-Werror"]
AD_SAMPLE = "anomaly_detection/sample_input_normal_id_01_00000000_hist_librosa.bin"


def compile_native(graph, folder: Path, extra_flags=(), **options) -> tuple[Path, object]:
    """Generate the model into folder and build the stdin/stdout harness with gcc; returns (program, NativeModel)."""
    model = generate_native_model(graph, folder, **options)
    program = folder / "run"
    sources = [f for f in model.files if f.suffix == ".c"] + [templates_dir() / "native" / "test_main.c"]
    result = subprocess.run(["gcc", *HOST_FLAGS, *extra_flags, "-I", str(folder), "-o", str(program),
                             *map(str, sources)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return program, model


def run_native(program: Path, inputs: np.ndarray, output_bytes: int, dtype=np.int8) -> np.ndarray:
    result = subprocess.run([str(program)], input=np.ascontiguousarray(inputs).tobytes(), capture_output=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return np.frombuffer(result.stdout, dtype=dtype).reshape(len(inputs), -1)


def random_inputs(graph, n: int, seed: int) -> np.ndarray:
    t = graph.input_tensors()[0]
    return np.random.default_rng(seed).integers(-128, 128, size=(n, t.size), dtype=np.int8)


@pytest.fixture(scope="session")
def native_build(tmp_path_factory, int8_model_path):
    """name -> (graph, program, NativeModel), each MLPerf Tiny model generated and compiled once."""
    built = {}

    def get(name: str):
        if name not in built:
            graph = load_tflite(int8_model_path(name))
            program, model = compile_native(graph, tmp_path_factory.mktemp(f"native_{name}"))
            built[name] = (graph, program, model)
        return built[name]

    return get


# Fewer samples for the big models: the reference interpreter is the slow side.
SAMPLES = {"kws": 24, "vww": 4, "ic": 16, "ic_large": 6, "ad": 32, "sww": 32}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SAMPLES))
def test_mlperf_tiny_models_are_bit_exact(native_build, name):
    graph, program, model = native_build(name)
    x = random_inputs(graph, SAMPLES[name], seed=1)
    expected = run_reference(graph.model_bytes, x)
    got = run_native(program, x, graph.output_tensors()[0].nbytes)
    assert got.shape == expected.shape
    mismatches = np.argwhere(got != expected)
    assert mismatches.size == 0, f"{len(mismatches)} outputs differ, first at {mismatches[0].tolist()}"
    assert len(set(map(bytes, got))) > 1  # different inputs, different outputs: the model really ran


def test_anomaly_detection_sample_is_bit_exact(native_build, shared_models):
    """The AD sample is 40 log-mel windows of 640 float32 values, quantized with the model's input parameters."""
    graph, program, _ = native_build("ad")
    raw = np.fromfile(shared_models / AD_SAMPLE, dtype="<f4").reshape(-1, 640)
    t = graph.input_tensors()[0]
    q = np.clip(np.round(raw / t.scale[0]) + t.zero_point[0], -128, 127).astype(np.int8)
    assert q.shape == (40, 640) and len(np.unique(q)) > 50
    np.testing.assert_array_equal(run_native(program, q, 640), run_reference(graph.model_bytes, q))


def test_arena_is_at_most_three_quarters_of_tflite_micro(native_build):
    """The memory goal of the native backend, on the models that keep three feature maps alive (IC) or not (KWS)."""
    for name in ("ic", "kws"):
        graph, _, model = native_build(name)
        tflm = tflm_arena_usage(graph.model_bytes).total_bytes
        assert model.arena_bytes <= 0.75 * tflm, (name, model.arena_bytes, tflm)
        assert model.arena_bytes < plan_activations(graph).peak_bytes  # in-place overlap really saved RAM


def test_in_place_plan_never_overlaps_what_is_still_needed(int8_model_path):
    """Every two buffers alive together are disjoint, unless one is an input the other overwrites far enough ahead."""
    from edgekit.codegen.native_plan import overlap_hints

    for name in ("ic", "vww"):
        graph = load_tflite(int8_model_path(name))
        hints = overlap_hints(graph)
        plan = plan_activations(graph, overlaps=hints)
        allowed = 0
        for a in plan.buffers:
            for b in plan.buffers:
                if a is b or not (a.first <= b.last and b.first <= a.last):
                    continue
                if a.offset + a.size <= b.offset or b.offset + b.size <= a.offset:
                    continue
                if (a.tensor, b.tensor) not in hints:
                    continue  # seen the other way round
                assert a.last == b.first, (name, a, b)  # the input dies where the output is written
                assert b.offset <= a.offset - hints[(a.tensor, b.tensor)], (name, a, b)
                allowed += 1
        overlapping = sum(1 for a in plan.buffers for b in plan.buffers if a is not b
                          and a.first <= b.last and b.first <= a.last
                          and not (a.offset + a.size <= b.offset or b.offset + b.size <= a.offset))
        assert overlapping == 2 * allowed > 0  # every overlap is one of the allowed pairs


def test_generated_code_is_stable_and_self_contained(tmp_path, int8_model_path):
    graph = load_tflite(int8_model_path("kws"))
    first = generate_native_model(graph, tmp_path / "a")
    generate_native_model(graph, tmp_path / "b")
    names = sorted(p.name for p in first.files)
    assert names == sorted(["model.c", "model.h", "ek_kernels.c", "ek_kernels.h", "edgekit_backend.h",
                            "edgekit_platform.h"])
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    text = (tmp_path / "a" / "model.c").read_text()
    assert '.backend = "native"' in text and "malloc(" not in text
    assert f"static uint8_t ek_arena[{first.arena_bytes}]" in text
    assert first.layers == ["CONV_2D", "DEPTHWISE_CONV_2D"] * 4 + ["CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                                                                   "SOFTMAX"]


def test_model_name_cannot_inject_c(tmp_path, int8_model_path):
    graph = parse_tflite(load_tflite(int8_model_path("ad")).model_bytes, name='x */ #error "\n?? y')
    program, _ = compile_native(graph, tmp_path / "m", name='evil"; */ int z; /*\\')
    text = (tmp_path / "m" / "model.c").read_text()  # it compiled with -Werror: nothing escaped its comment
    assert not any(line.lstrip().startswith("#error") for line in text.splitlines())
    assert '.model_name = "evil\\"; */ int z; /*\\\\",' in text  # an escaped C string, inert
    x = random_inputs(graph, 2, seed=3)
    np.testing.assert_array_equal(run_native(program, x, 640), run_reference(graph.model_bytes, x))


def test_layer_profiling_build(tmp_path, int8_model_path):
    """-DEK_PROFILE_LAYERS adds the tick calls and changes nothing in the results."""
    graph = load_tflite(int8_model_path("sww"))
    program, model = compile_native(graph, tmp_path / "p", extra_flags=["-DEK_PROFILE_LAYERS"])
    assert "ek_platform_ticks" in (tmp_path / "p" / "model.c").read_text()
    x = random_inputs(graph, 4, seed=4)
    np.testing.assert_array_equal(run_native(program, x, 3), run_reference(graph.model_bytes, x))
    assert len(model.layers) == 10  # RESHAPE is a view: no layer


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
def test_compiles_warning_free_for_cortex_m4(tmp_path, int8_model_path):
    graph = load_tflite(int8_model_path("ic"))
    generate_native_model(graph, tmp_path)
    # every kernel file, also those a model ships only when it uses their ops (ek_shape.c, ek_matmul.c, ...)
    kernels = sorted((templates_dir() / "native").glob("ek_*.c"))
    for source in [tmp_path / "model.c", *kernels]:
        for profile in ([], ["-DEK_PROFILE_LAYERS"]):
            result = subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, *profile, "-I", str(tmp_path), "-c", str(source),
                                     "-o", str(tmp_path / "out.o")], capture_output=True, text=True)
            assert result.returncode == 0 and not result.stderr, result.stderr


# ------------------------------------------------------------------------------------------------------------
# Models built here: float ends, and what the backend must refuse.

def convert(model, input_shape, *, int8: bool = True, float_ends: bool = False, int16: bool = False,
            seed: int = 0) -> bytes:
    """Keras model -> .tflite bytes with batch 1; int8 (default) with a random representative data set."""
    from edgekit._tf import tensorflow

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf = tensorflow()
    function = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(function.get_concrete_function(
        tf.TensorSpec((1, *input_shape), tf.float32)))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if int8 or int16:
        rng = np.random.default_rng(seed)
        samples = rng.uniform(-1, 1, size=(32, 1, *input_shape)).astype(np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        if int16:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if not float_ends:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
    return bytes(converter.convert())


@pytest.mark.slow
def test_float_input_and_output_model_is_bit_exact(tmp_path):
    """QUANTIZE at the input and DEQUANTIZE at the output: float32 in, float32 out, same bits as TFLite Micro."""
    from edgekit._tf import keras

    k = keras()
    k.utils.set_random_seed(5)
    model = k.Sequential([k.Input((6, 6, 2)), k.layers.Conv2D(4, 3, activation="relu"), k.layers.Flatten(),
                          k.layers.Dense(5)])
    graph = parse_tflite(convert(model, (6, 6, 2), float_ends=True), "float_ends")
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(graph.opcodes)
    program, _ = compile_native(graph, tmp_path / "f")
    x = np.random.default_rng(6).uniform(-1.5, 1.5, size=(16, 72)).astype(np.float32)
    expected = run_reference(graph.model_bytes, x)
    got = run_native(program, x, 20, dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), expected.astype(np.float32).view(np.uint32))


@pytest.mark.slow
def test_lstm_and_int16_models_are_refused(tmp_path):
    from edgekit._tf import keras

    k = keras()
    lstm = k.Sequential([k.Input((5, 3)), k.layers.LSTM(4), k.layers.Dense(2)])
    with pytest.raises(EdgekitError) as error:  # a WHILE loop is refused when read, a fused LSTM by the backend
        generate_native_model(parse_tflite(convert(lstm, (5, 3), int8=False), "lstm"), tmp_path / "lstm")
    message = str(error.value)
    assert "\n" not in message
    assert ("LSTM" in message and "--backend tflm" in message) or (
        "subgraphs (WHILE)" in message and "no backend runs control flow" in message), message
    assert not (tmp_path / "lstm").exists()  # no partial output

    dense = k.Sequential([k.Input((8,)), k.layers.Dense(4, activation="relu"), k.layers.Dense(2)])
    graph16 = parse_tflite(convert(dense, (8,), int16=True), "int16")
    reasons = unsupported_reasons(graph16)
    assert any("FULLY_CONNECTED" in r and "int16" in r for r in reasons), reasons
    with pytest.raises(EdgekitError, match="int16.*--backend tflm"):
        generate_native_model(graph16, tmp_path / "int16")


@pytest.mark.slow
def test_dead_channels_are_bit_exact(tmp_path):
    """A filter of zeros with a bias gets a per-channel scale near zero and a bias near 2^30 from the converter (as
    nine VWW layers have), past what the kernels' scaled accumulators hold: the generator computes that channel's
    constant output once. Portable and SIMD kernel paths, against TFLite Micro."""
    from edgekit._tf import keras

    k = keras()
    k.utils.set_random_seed(11)
    model = k.Sequential([k.Input((7, 7, 4)), k.layers.Conv2D(6, 3, padding="same", activation="relu"),
                          k.layers.DepthwiseConv2D(3, padding="same"), k.layers.Conv2D(5, 1), k.layers.Flatten(),
                          k.layers.Dense(3)])
    conv, depthwise = model.layers[0], model.layers[1]
    w, b = conv.get_weights()
    w[..., 2] = 0.0
    b[2] = 0.7
    conv.set_weights([w, b])
    w, b = depthwise.get_weights()
    w[:, :, 3, 0] = 0.0
    b[3] = -0.4
    depthwise.set_weights([w, b])
    graph = parse_tflite(convert(model, (7, 7, 4)), "dead_channels")
    conv_bias = graph.tensors[graph.operators[0].inputs[2]].data
    assert abs(int(conv_bias[2])) >= 1 << 29  # the converter's dead-channel bias, the case under test
    x = random_inputs(graph, 8, seed=3)
    expected = run_reference(graph.model_bytes, x)
    for name, flags in (("portable", ()), ("simd", ("-DEK_EMULATE_DSP",))):
        program, _ = compile_native(graph, tmp_path / name, flags)
        np.testing.assert_array_equal(run_native(program, x, expected.shape[-1]), expected.reshape(len(x), -1))
