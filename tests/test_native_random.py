"""Property-based: random small Keras models, converted to full int8, give the same bits natively as in TFLite Micro.

Hypothesis draws the input shape and a chain of blocks (convolutions with strides, dilations and SAME/VALID
padding, depthwise with depth multipliers, pools, residual adds, concatenations, gated multiplies, logistic/tanh,
zero padding, LeakyReLU, hard-swish, PReLU, transposed convolutions, bilinear upsampling, subtractions, global
average pooling) and a head. Each model is converted with a random representative data set,
generated, compiled with gcc and run on random int8 inputs next to TFLite Micro's interpreter.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.reference import run_reference
from edgekit.tflite_model import parse_tflite
from tests.test_native import compile_native, convert, random_inputs, run_native

BLOCKS = ("conv", "depthwise", "pool", "residual", "concat", "gate", "activation", "pad", "leaky", "hard_swish",
          "prelu", "transpose", "upsample", "subtract")
ACTIVATIONS = (None, "relu", "relu6")


@st.composite
def model_specs(draw):
    shape = (draw(st.integers(3, 9)), draw(st.integers(3, 9)), draw(st.integers(1, 4)))
    blocks = []
    for kind in draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4)):
        p = {"kind": kind}
        if kind in ("conv", "depthwise"):
            p["k"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            p["dilation"] = draw(st.sampled_from((1, 1, 2)))
            p["stride"] = 1 if p["dilation"] > 1 else draw(st.integers(1, 2))
            p["padding"] = draw(st.sampled_from(("same", "valid")))
            p["activation"] = draw(st.sampled_from(ACTIVATIONS))
            p["n"] = draw(st.integers(1, 6)) if kind == "conv" else draw(st.integers(1, 3))  # filters / multiplier
        elif kind == "pool":
            p["type"] = draw(st.sampled_from(("avg", "max")))
            p["size"] = draw(st.integers(2, 3))
            p["stride"] = draw(st.integers(1, 2))
            p["padding"] = draw(st.sampled_from(("same", "valid")))
        elif kind == "residual":
            p["activation"] = draw(st.sampled_from(ACTIVATIONS))
        elif kind == "concat":
            p["n"] = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        elif kind == "activation":
            p["function"] = draw(st.sampled_from(("sigmoid", "tanh")))
        elif kind == "pad":
            p["pads"] = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))),
                         (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
        elif kind == "leaky":
            p["alpha"] = draw(st.sampled_from((0.01, 0.1, 0.3)))
        elif kind == "transpose":
            p["k"] = draw(st.integers(1, 3))
            p["stride"] = draw(st.integers(1, 2))
            p["padding"] = draw(st.sampled_from(("same", "valid")))
            p["n"] = draw(st.integers(1, 4))
        blocks.append(p)
    head = draw(st.sampled_from(("flatten", "flatten_softmax", "mean", "mean_keepdims")))
    return {"shape": shape, "blocks": blocks, "head": head, "units": draw(st.integers(2, 8)),
            "seed": draw(st.integers(0, 1000))}


def build_model(spec):
    """The Keras model of a spec; blocks that would not fit the current feature map fall back to SAME padding."""
    from edgekit._tf import keras

    k = keras()
    layers = k.layers
    k.utils.set_random_seed(spec["seed"])
    inputs = k.Input(spec["shape"])
    x = inputs
    for p in spec["blocks"]:
        h, w, c = (int(d) for d in x.shape[1:])
        kind = p["kind"]
        if kind in ("conv", "depthwise"):
            eff = [(kk - 1) * p["dilation"] + 1 for kk in p["k"]]
            padding = p["padding"] if eff[0] <= h and eff[1] <= w else "same"
            common = dict(strides=p["stride"], padding=padding, dilation_rate=p["dilation"],
                          activation=p["activation"])
            if kind == "conv":
                x = layers.Conv2D(p["n"], p["k"], bias_initializer="random_normal", **common)(x)
            else:
                x = layers.DepthwiseConv2D(p["k"], depth_multiplier=p["n"], bias_initializer="random_normal",
                                           **common)(x)
        elif kind == "pool":
            padding = p["padding"] if p["size"] <= min(h, w) else "same"
            pool = layers.AveragePooling2D if p["type"] == "avg" else layers.MaxPooling2D
            x = pool(p["size"], strides=p["stride"], padding=padding)(x)
        elif kind == "residual":
            y = layers.Conv2D(c, 3, padding="same", activation="relu")(x)
            y = layers.Conv2D(c, 3, padding="same")(y)
            x = layers.Add()([x, y])
            if p["activation"]:
                x = layers.Activation(p["activation"])(x)
        elif kind == "concat":
            a = layers.Conv2D(p["n"][0], 1, activation="relu")(x)
            b = layers.Conv2D(p["n"][1], 3, padding="same")(x)
            x = layers.Concatenate()([a, b])
        elif kind == "gate":
            x = layers.Multiply()([x, layers.Conv2D(c, 1, activation="sigmoid")(x)])
        elif kind == "activation":
            x = layers.Activation(p["function"])(x)
        elif kind == "pad":
            x = layers.ZeroPadding2D(p["pads"])(x)
        elif kind == "leaky":
            x = layers.LeakyReLU(p["alpha"])(x)
        elif kind == "hard_swish":
            x = layers.Activation("hard_swish")(layers.Conv2D(c, 1)(x))
        elif kind == "prelu":
            x = layers.PReLU(alpha_initializer="random_uniform", shared_axes=[1, 2])(layers.Conv2D(c, 1)(x))
        elif kind == "transpose":
            x = layers.Conv2DTranspose(p["n"], p["k"], strides=p["stride"], padding=p["padding"],
                                       bias_initializer="random_normal")(x)
        elif kind == "upsample":
            x = layers.UpSampling2D(interpolation="bilinear")(x)
        elif kind == "subtract":
            x = layers.Subtract()([x, layers.Conv2D(c, 1)(x)])
    if spec["head"].startswith("mean"):
        x = layers.GlobalAveragePooling2D(keepdims=spec["head"] == "mean_keepdims")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(spec["units"], activation="softmax" if spec["head"] == "flatten_softmax" else None)(x)
    return k.Model(inputs, x)


def check_bit_exact(spec, folder: Path) -> set[str]:
    model = build_model(spec)
    graph = parse_tflite(convert(model, spec["shape"], seed=spec["seed"]), "random")
    x = random_inputs(graph, 6, seed=spec["seed"])
    expected = run_reference(graph.model_bytes, x)
    # the portable kernels, and the SIMD kernels of DSP cores run through their portable instruction equivalents
    for path, flags in (("portable", ()), ("simd", ("-DEK_EMULATE_DSP",))):
        program, _ = compile_native(graph, folder / path, extra_flags=flags)
        got = run_native(program, x, graph.output_tensors()[0].nbytes)
        mismatches = np.argwhere(got != expected)
        assert mismatches.size == 0, (f"{path} kernels: {len(mismatches)} outputs differ (ops {graph.opcodes}): "
                                      f"native {got[tuple(mismatches[0])]} vs TFLite Micro "
                                      f"{expected[tuple(mismatches[0])]}")
    return set(graph.opcodes)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(spec=model_specs())
def test_random_models_are_bit_exact(spec):
    with tempfile.TemporaryDirectory() as folder:
        check_bit_exact(spec, Path(folder))


@pytest.mark.slow
def test_every_supported_op_in_one_model(tmp_path):
    """A fixed model that exercises every op the random test can draw, so a regression names itself quickly."""
    spec = {"shape": (8, 7, 3), "units": 5, "seed": 7, "head": "mean",
            "blocks": [{"kind": "pad", "pads": ((1, 0), (0, 2))},
                       {"kind": "conv", "k": (3, 2), "dilation": 1, "stride": 2, "padding": "same",
                        "activation": "relu6", "n": 4},
                       {"kind": "depthwise", "k": (3, 3), "dilation": 2, "stride": 1, "padding": "same",
                        "activation": "relu", "n": 2},
                       {"kind": "residual", "activation": "relu"},
                       {"kind": "concat", "n": (2, 3)},
                       {"kind": "gate"},
                       {"kind": "pool", "type": "max", "size": 2, "stride": 1, "padding": "same"},
                       {"kind": "activation", "function": "tanh"},
                       {"kind": "pool", "type": "avg", "size": 3, "stride": 2, "padding": "same"}]}
    ops = check_bit_exact(spec, tmp_path)
    assert {"PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "MUL", "LOGISTIC", "MAX_POOL_2D",
            "TANH", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED"} <= ops, ops


@pytest.mark.slow
def test_new_ops_in_one_model(tmp_path):
    """A fixed model with the blocks that edgekit.codegen.native_ops compiles (LEAKY_RELU, HARD_SWISH, PRELU,
    TRANSPOSE_CONV, RESIZE_BILINEAR, SUB), with the DSP paths emulated as well."""
    spec = {"shape": (5, 6, 3), "units": 4, "seed": 11, "head": "flatten_softmax",
            "blocks": [{"kind": "leaky", "alpha": 0.1},
                       {"kind": "transpose", "k": 3, "stride": 2, "padding": "same", "n": 3},
                       {"kind": "hard_swish"}, {"kind": "prelu"}, {"kind": "upsample"}, {"kind": "subtract"}]}
    ops = check_bit_exact(spec, tmp_path)
    assert {"LEAKY_RELU", "TRANSPOSE_CONV", "HARD_SWISH", "PRELU", "RESIZE_BILINEAR", "SUB"} <= ops, ops
