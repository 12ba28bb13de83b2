"""Every op of edgekit.codegen.native_ops, bit-exact with TFLite Micro's int8 kernels, on random shapes and
random quantization.

Each test builds one TensorFlow function per seed that batches several ops (random shapes, parameters and
representative ranges drawn from numpy's RandomState, so the quantization differs per seed), converts it to a
fully int8 model, checks that the converter really emitted the ops under test, compiles the native C once and
compares many random int8 inputs (all 256 values occur) with TFLite Micro's interpreter.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgekit.reference import run_reference
from edgekit.tflite_model import parse_tflite
from tests.test_native import compile_native, random_inputs, run_native

SEEDS = (0, 1)


def convert_function(fn, input_shape, rng, *, low=None, high=None, batch=1) -> bytes:
    """A TensorFlow function of one float input -> int8 .tflite bytes, calibrated on a random range."""
    from edgekit._tf import tensorflow
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf = tensorflow()
    low = -rng.uniform(0.5, 4.0) if low is None else low
    high = rng.uniform(0.5, 6.0) if high is None else high
    frozen = convert_variables_to_constants_v2(tf.function(fn).get_concrete_function(
        tf.TensorSpec((batch, *input_shape), tf.float32)))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    samples = rng.uniform(low, high, size=(24, 1, *input_shape)).astype(np.float32)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def flat(tf, *tensors):
    """One output: every branch flattened and concatenated (the converter requantizes them to one scale), at
    most 8 inputs per CONCATENATION (TFLite Micro's limit is 10)."""
    tensors = [tf.reshape(t, [1, -1]) for t in tensors]
    while len(tensors) > 1:
        tensors = [tf.concat(tensors[i:i + 8], axis=1) if len(tensors[i:i + 8]) > 1 else tensors[i]
                   for i in range(0, len(tensors), 8)]
    return tensors[0]


def check_bit_exact(model_bytes: bytes, folder, expected_ops, samples: int = 12, seed: int = 0):
    graph = parse_tflite(model_bytes, "ops")
    missing = set(expected_ops) - set(graph.opcodes)
    assert not missing, f"the converter did not emit {missing} (ops: {graph.opcodes})"
    program, model = compile_native(graph, folder)
    x = random_inputs(graph, samples, seed=seed)
    expected = run_reference(graph.model_bytes, x)
    got = run_native(program, x, graph.output_tensors()[0].nbytes)
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{len(bad)} of {got.size} outputs differ (ops {graph.opcodes}), first at "
                           f"{bad[0].tolist()}: native {got[tuple(bad[0])]} vs TFLite Micro {expected[tuple(bad[0])]}")
    assert len(set(map(bytes, got))) > 1  # the model really depends on its input
    return graph, model


def _tf():
    from edgekit._tf import tensorflow

    return tensorflow()


@pytest.mark.parametrize("seed", SEEDS)
def test_activations(tmp_path, seed):
    """LEAKY_RELU (positive and negative alpha), RELU, RELU6, HARD_SWISH, PRELU, standalone on the input."""
    tf = _tf()
    rng = np.random.RandomState(seed)
    shape = (int(rng.randint(2, 6)), int(rng.randint(2, 6)), int(rng.randint(1, 5)))
    alpha = float(rng.uniform(0.05, 0.5))
    from edgekit._tf import keras

    k = keras()
    prelu_layer = k.layers.PReLU(alpha_initializer=k.initializers.Constant(
        rng.uniform(-0.5, 0.8, size=shape[-1:]).astype(np.float32)), shared_axes=[1])

    def fn(x):
        hard_swish = x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
        prelu = prelu_layer(x * 0.75)  # not on x itself: shared with relu(x), the converter would not fuse it
        return flat(tf, tf.nn.leaky_relu(x, alpha), tf.nn.leaky_relu(x, -alpha), tf.nn.relu(x), tf.nn.relu6(x),
                    hard_swish, prelu)

    check_bit_exact(convert_function(fn, shape, rng), tmp_path, {"LEAKY_RELU", "RELU", "RELU6", "HARD_SWISH",
                                                                  "PRELU"}, samples=24, seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_ops_with_broadcasting(tmp_path, seed):
    """SUB, SQUARED_DIFFERENCE, MAXIMUM, MINIMUM with constants broadcast along random axes, and between two
    activations of different scales; RSQRT of a positive activation; LayerNormalization (whose NEG TFLite Micro
    runs in float32 between a DEQUANTIZE and a QUANTIZE)."""
    tf = _tf()
    rng = np.random.RandomState(seed)
    shape = (int(rng.randint(2, 5)), int(rng.randint(2, 5)), int(rng.randint(2, 5)))

    def const(mask):
        dims = [d if keep else 1 for d, keep in zip(shape, mask)]
        return tf.constant(rng.uniform(-2, 2, size=dims).astype(np.float32))

    c1, c2, c3, c4 = (const(rng.rand(3) > 0.5) for _ in range(4))
    from edgekit._tf import keras

    norm = keras().layers.LayerNormalization()  # MEAN, SQUARED_DIFFERENCE, RSQRT and a float NEG island

    def fn(x):
        y = tf.nn.relu(x) * 0.5
        return flat(tf, x - c1, c2 - x, tf.math.squared_difference(x, c3), tf.maximum(x, c4), tf.minimum(x, c1),
                    x - y, tf.math.squared_difference(x, y), tf.math.rsqrt(x * x + 0.25), norm(x * 0.5 + 0.1))

    check_bit_exact(convert_function(fn, shape, rng), tmp_path,
                    {"SUB", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "RSQRT", "NEG"}, seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_reductions_over_any_axes(tmp_path, seed):
    """MEAN, SUM, REDUCE_MAX, REDUCE_MIN over random (also non-adjacent) axes of a 4-D tensor, kept or not."""
    tf = _tf()
    rng = np.random.RandomState(seed)
    shape = tuple(int(d) for d in rng.randint(2, 6, size=3))

    def axes():
        chosen = sorted(int(a) for a in rng.choice([1, 2, 3], size=rng.randint(1, 3), replace=False))
        return chosen, bool(rng.rand() > 0.5)

    picks = [axes() for _ in range(4)]

    def fn(x):
        (a0, k0), (a1, k1), (a2, k2), (a3, k3) = picks
        return flat(tf, tf.reduce_mean(x, axis=a0, keepdims=k0), tf.reduce_mean(x, axis=[1, 3]),
                    tf.reduce_sum(x, axis=a1, keepdims=k1), tf.reduce_max(x, axis=a2, keepdims=k2),
                    tf.reduce_min(x, axis=a3, keepdims=k3))

    check_bit_exact(convert_function(fn, shape, rng), tmp_path, {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"},
                    seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_data_movement(tmp_path, seed):
    """TRANSPOSE, SLICE, STRIDED_SLICE (negative strides, shrinking), SPLIT, SPLIT_V, UNPACK, PACK, GATHER,
    DEPTH_TO_SPACE, SPACE_TO_DEPTH, CONCATENATION along a random axis."""
    tf = _tf()
    rng = np.random.RandomState(seed)
    h, w, c = 2 * int(rng.randint(1, 4)), 2 * int(rng.randint(1, 4)), 4 * int(rng.randint(1, 3))
    perm = [0] + [int(p) + 1 for p in rng.permutation(3)]
    begin = [0, int(rng.randint(0, h // 2)), int(rng.randint(0, w // 2)), 0]
    size = [1, h - begin[1], -1, int(rng.randint(1, c + 1))]
    indices = rng.randint(0, c, size=int(rng.randint(1, 6))).tolist()
    split_sizes = [1, c - 1]
    axis = int(rng.randint(1, 4))

    def fn(x):
        a = tf.nn.relu(x)
        parts = tf.split(x, 2, axis=3)
        first, rest = tf.split(x, split_sizes, axis=3)
        rows = tf.unstack(x, axis=1)  # every output used: an unused one would stay float
        return flat(tf, tf.transpose(x, perm), tf.slice(x, begin, size), x[:, ::-1, 1::2, :],
                    x[:, -1, :, ::2], parts[1] - parts[0], rest, first, tf.stack(rows, axis=2) * 0.5,
                    tf.stack([rows[0], a[:, 0]], axis=2),
                    tf.gather(x, indices, axis=3), tf.nn.depth_to_space(x, 2), tf.nn.space_to_depth(x, 2),
                    tf.concat([x, a], axis=axis))

    check_bit_exact(convert_function(fn, (h, w, c), rng), tmp_path,
                    {"TRANSPOSE", "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "UNPACK", "PACK", "GATHER",
                     "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "CONCATENATION"}, seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_resizes(tmp_path, seed):
    """RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR, up and down, with align_corners and half_pixel_centers."""
    tf = _tf()
    rng = np.random.RandomState(seed)
    shape = (int(rng.randint(2, 6)), int(rng.randint(2, 6)), int(rng.randint(1, 4)))
    sizes = [[int(rng.randint(1, 12)), int(rng.randint(1, 12))] for _ in range(3)]
    v1 = tf.compat.v1.image

    def fn(x):
        return flat(tf, v1.resize_nearest_neighbor(x, sizes[0]),
                    v1.resize_nearest_neighbor(x, sizes[1], align_corners=True),
                    v1.resize_nearest_neighbor(x, sizes[2], half_pixel_centers=True),
                    v1.resize_bilinear(x, sizes[0]), v1.resize_bilinear(x, sizes[1], align_corners=True),
                    v1.resize_bilinear(x, sizes[2], half_pixel_centers=True))

    check_bit_exact(convert_function(fn, shape, rng), tmp_path, {"RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"},
                    seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_matmul_and_transposed_convolution(tmp_path, seed):
    """BATCH_MATMUL of two activations (adjoint flags, broadcast batch), with a constant; TRANSPOSE_CONV with
    random kernel, strides and padding, with a bias; a dilated convolution and a depthwise multiplier of 2."""
    tf = _tf()
    rng = np.random.RandomState(seed)
    h, w, c = int(rng.randint(2, 5)), int(rng.randint(2, 6)), int(rng.randint(1, 4))
    k = (int(rng.randint(1, 4)), int(rng.randint(1, 4)))
    strides = (int(rng.randint(1, 3)), int(rng.randint(1, 3)))
    padding = "SAME" if rng.rand() > 0.5 else "VALID"
    out_c = int(rng.randint(1, 5))
    if padding == "SAME":
        out_hw = (h * strides[0], w * strides[1])
    else:
        out_hw = ((h - 1) * strides[0] + k[0], (w - 1) * strides[1] + k[1])
    filters = tf.constant(rng.normal(size=(*k, out_c, c)).astype(np.float32))
    bias = tf.constant(rng.normal(size=out_c).astype(np.float32))
    rhs = tf.constant(rng.normal(size=(c, 3)).astype(np.float32))
    dilated = tf.constant(rng.normal(size=(2, 2, c, 2)).astype(np.float32))
    depthwise = tf.constant(rng.normal(size=(3, 3, c, 2)).astype(np.float32))

    def fn(x):
        m = tf.reshape(x, [1, h, w, c])
        y = tf.nn.relu(m) + 0.1
        products = [tf.matmul(m, y, transpose_b=True), tf.matmul(m, y, transpose_a=True), tf.matmul(m, rhs),
                    tf.matmul(m[:, :1], y, transpose_b=True)]
        up = tf.nn.conv2d_transpose(x, filters, [1, *out_hw, out_c], strides, padding) + bias
        conv = tf.nn.conv2d(x, dilated, 1, "SAME", dilations=2)
        dw = tf.nn.depthwise_conv2d(x, depthwise, [1, 1, 1, 1], "SAME")
        return flat(tf, *products, up, conv, dw)

    check_bit_exact(convert_function(fn, (h, w, c), rng), tmp_path,
                    {"BATCH_MATMUL", "TRANSPOSE_CONV", "CONV_2D", "DEPTHWISE_CONV_2D"}, seed=seed)


def test_dynamic_batch_flatten_is_folded(tmp_path):
    """A Keras model converted with a dynamic batch computes its Flatten's target (SHAPE -> STRIDED_SLICE -> PACK
    -> RESHAPE); canonicalization folds it, the model builds natively and the report says what was folded."""
    from edgekit._tf import keras, tensorflow

    tf, k = tensorflow(), keras()
    k.utils.set_random_seed(3)
    model = k.Sequential([k.Input((6, 6, 2)), k.layers.Conv2D(3, 3), k.layers.Flatten(), k.layers.Dense(4)])
    rng = np.random.RandomState(3)
    graph, native = check_bit_exact(convert_function(lambda x: model(x), (6, 6, 2), rng, batch=None), tmp_path,
                                    {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"})
    assert any("folded" in note and "SHAPE" in note for note in native.canonical), native.canonical
    assert native.layers == ["CONV_2D", "FULLY_CONNECTED"]  # the shape computation and the RESHAPE are gone
    from edgekit.analyze import analyze

    notes = analyze(graph, None, "native")["notes"]
    assert any(n.startswith("before native codegen:") and "SHAPE" in n for n in notes), notes


def test_canonicalization_drops_views_and_identities(tmp_path):
    """Converter noise added to a converted model (a reshape chain back to the same shape, a TRANSPOSE that moves
    only a size-1 axis, an identity RESHAPE, an int8 QUANTIZE that changes nothing): canonicalization leaves the
    original ops, and the generated C still gives the original model's bits."""
    import dataclasses

    from edgekit.codegen.canonical import canonicalize
    from edgekit.tflite_model import Operator

    tf = _tf()
    rng = np.random.RandomState(4)
    graph = parse_tflite(convert_function(lambda x: tf.reshape(tf.nn.relu(x), [1, 24]) * 2.0, (2, 3, 4), rng),
                         "views")
    relu = next(op for op in graph.operators if op.opcode == "RELU")
    source = relu.outputs[0]
    tensors = list(graph.tensors)

    def tensor(shape, data=None, dtype=None):
        template = tensors[source]
        tensors.append(dataclasses.replace(template, index=len(tensors), name=f"noise{len(tensors)}", shape=shape,
                                           data=data, dtype=dtype or template.dtype,
                                           scale=template.scale if data is None else np.zeros(0, np.float32),
                                           zero_point=template.zero_point if data is None else np.zeros(0)))
        return len(tensors) - 1

    a, b = tensor((1, 24)), tensor((1, 2, 3, 4))
    perm = tensor((4,), np.array([1, 0, 2, 3], dtype=np.int32), "int32")
    c, d, e = tensor((2, 1, 3, 4)), tensor((1, 2, 3, 4)), tensor((1, 2, 3, 4))
    noise = [("RESHAPE", [source], [a]), ("RESHAPE", [a], [b]), ("TRANSPOSE", [b, perm], [c]),
             ("RESHAPE", [c], [d]), ("QUANTIZE", [d], [e])]
    ops = []
    for op in graph.operators:
        ops.append(op)
        if op is relu:
            ops += [Operator(index=0, opcode=code, inputs=i, outputs=o) for code, i, o in noise]
    for op in ops[ops.index(relu) + len(noise) + 1:]:
        op.inputs = [e if i == source else i for i in op.inputs]
    noisy = dataclasses.replace(graph, tensors=tensors,
                                operators=[dataclasses.replace(op, index=n) for n, op in enumerate(ops)])

    canonical = canonicalize(noisy)
    assert [op.opcode for op in canonical.graph.operators] == [op.opcode for op in graph.operators]
    assert any("TRANSPOSE rewritten as a view" in n for n in canonical.notes), canonical.notes
    assert any("reshape chain" in n and "fused" in n for n in canonical.notes), canonical.notes
    program, model = compile_native(noisy, tmp_path)
    x = random_inputs(graph, 8, seed=4)
    np.testing.assert_array_equal(run_native(program, x, 24), run_reference(graph.model_bytes, x))


def test_tile_is_refused_by_name(tmp_path):
    """UpSampling2D's nearest mode converts to TILE, which TFLite Micro has no kernel for: refused by name."""
    from edgekit._tf import keras
    from edgekit.codegen.native import unsupported_reasons
    from tests.test_native import convert

    k = keras()
    model = k.Sequential([k.Input((4, 4, 2)), k.layers.UpSampling2D()])
    graph = parse_tflite(convert(model, (4, 4, 2)), "upsampling")
    assert "TILE" in graph.opcodes
    assert "TILE" in unsupported_reasons(graph)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed")
def test_new_kernels_on_cortex_m4_in_qemu(tmp_path):
    """The new kernel files on the DSP target (mps2-an386, Cortex-M4F in QEMU): bit-exact through profile."""
    from edgekit.build import build
    from edgekit.profile import profile_build

    tf = _tf()
    rng = np.random.RandomState(7)
    from edgekit._tf import keras

    k = keras()
    filters = tf.constant(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    prelu_layer = k.layers.PReLU(alpha_initializer=k.initializers.Constant(0.25))

    def fn(x):
        y = tf.nn.leaky_relu(x, 0.1)
        hs = y * tf.nn.relu6(y + 3.0) * (1.0 / 6.0)
        up = tf.nn.conv2d_transpose(hs, filters, [1, 8, 8, 3], 2, "SAME")
        m = tf.reshape(x, [1, 16, 4])
        att = tf.matmul(m, m, transpose_b=True)
        prelu = prelu_layer(x)
        return flat(tf, tf.reduce_max(up, axis=[1, 2]), tf.transpose(up, [0, 3, 1, 2]) - 0.5, att,
                    tf.reduce_mean(prelu, axis=[1, 3]), tf.compat.v1.image.resize_bilinear(x, [6, 5]))

    model_path = tmp_path / "ops.tflite"
    model_path.write_bytes(convert_function(fn, (4, 4, 4), rng))
    out = tmp_path / "build"
    build(model_path, "mps2-an386", out, backend="native", quiet=True)
    profile = profile_build(out, runs=3, seed=5)
    assert profile["max_abs_diff"] == 0
