"""Every (board, backend) pair either builds or is refused with a route that then builds (issue 16).

The matrix: every board file x both backends x two models, one the native backend runs (MLPerf Tiny's KWS) and
one with an operator it lacks (LOG_SOFTMAX, which TFLite Micro runs). A refusal's `use --board B --backend X`
is followed, at --no-compile level (no toolchain is needed for that), and must succeed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgekit.boards import all_boards
from edgekit.build import build
from edgekit.errors import EdgekitError


@pytest.fixture(scope="module")
def lacking_model(tmp_path_factory):
    from edgekit._tf import keras
    from edgekit.data import from_arrays
    from edgekit.quantize import quantize

    k = keras()
    k.utils.set_random_seed(0)
    model = k.Sequential([k.Input((16,)), k.layers.Dense(8), k.layers.Activation("log_softmax"), k.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[np.arange(64) % 4]
    result = quantize(model, from_arrays(x, y), calibration_samples=32, eval_samples=None, quiet=True)
    path = tmp_path_factory.mktemp("lacking") / "lacking.tflite"
    path.write_bytes(result.tflite_bytes)
    return path


def _build(model, board, backend, out):
    return build(str(model), board, out, backend=backend, compile=False, quiet=True)


@pytest.mark.slow
def test_every_refusal_names_a_route_that_builds(lacking_model, int8_model_path, tmp_path):
    from edgekit.tflite_model import load_tflite

    assert "LOG_SOFTMAX" in load_tflite(lacking_model).opcodes
    models = {"kws": int8_model_path("kws"), "lacking": lacking_model}
    built, followed = 0, 0
    for model_name, model in models.items():
        for board in sorted(all_boards()):
            for backend in ("native", "tflm"):
                out = tmp_path / f"{model_name}-{board}-{backend}"
                try:
                    _build(model, board, backend, out)
                    built += 1
                    continue
                except EdgekitError as refused:
                    message = str(refused)
                assert "\n" not in message
                route = re.search(r"use (?:--board (\S+) )?--backend (\w+)(?: \(generated; set TFLM_DIR to compile\))?$",
                                  message)
                assert route, f"{model_name} {board} {backend}: no route in: {message}"
                target_board, target_backend = route.group(1) or board, route.group(2)
                assert (target_board, target_backend) != (board, backend), message
                _build(model, target_board, target_backend, tmp_path / f"route-{out.name}")  # must not raise
                followed += 1
    assert followed > 0 and built > 0  # the matrix has both kinds of pairs
    # the native backend lacks LOG_SOFTMAX: on a qemu board the route is TFLite Micro there, which without a tree
    # is generated, and the message says exactly that
    with pytest.raises(EdgekitError, match=r"LOG_SOFTMAX.*; use --backend tflm( \(generated; set TFLM_DIR to "
                                           r"compile\))?$"):
        _build(lacking_model, "mps2-an386", "native", tmp_path / "lacking-qemu")
