"""One semantic edit per graph validation rule (edgekit/graph_check.py) on the KWS model: parse_tflite refuses
each with one line naming the rule, and the real MLPerf Tiny models all pass."""

import pytest

from edgekit import tflite_model
from edgekit.errors import EdgekitError
from edgekit.graph_check import GraphError, validate_graph
from edgekit.tflite_model import load_tflite, parse_tflite
from tests.conftest import INT8_MODELS
from tests.graph_edits import RULE_EDITS, edited, long_chain


@pytest.fixture(scope="module")
def kws_bytes(int8_model_path):
    return int8_model_path("kws").read_bytes()


@pytest.mark.parametrize("model", sorted(INT8_MODELS))
def test_mlperf_models_are_valid(int8_model_path, model):
    graph = load_tflite(int8_model_path(model))
    validate_graph(graph)  # parse_tflite already did; again, to be explicit
    assert graph.operators and graph.num_subgraphs == 1


@pytest.mark.parametrize("rule, what, edit", RULE_EDITS, ids=[what for _, what, _ in RULE_EDITS])
def test_each_rule_refuses_its_edit(kws_bytes, rule, what, edit):
    broken = edited(kws_bytes, edit)
    with pytest.raises(EdgekitError) as error:
        parse_tflite(broken, name="kws_edit")
    message = str(error.value)
    assert "\n" not in message and message.startswith("kws_edit")
    if rule == "subgraphs":
        assert "has 2 subgraphs (WHILE)" in message and "no backend runs control flow" in message
    else:
        assert isinstance(error.value, GraphError) and error.value.rule == rule, message
        assert f"({rule})" in message and "expected" in message


def test_messages_name_operator_and_tensor(kws_bytes):
    _, _, two_producers = next(e for e in RULE_EDITS if e[0] == "two producers")
    with pytest.raises(GraphError, match=r"operator 2 \(CONV_2D\), tensor 23 '[^']+': operator 1 "
                                         r"\(DEPTHWISE_CONV_2D\) writes this tensor too"):
        parse_tflite(edited(kws_bytes, two_producers), name="kws")


def test_operator_cap_is_stated(kws_bytes, monkeypatch):
    monkeypatch.setattr(tflite_model, "MAX_OPERATORS", 12)
    with pytest.raises(EdgekitError, match="kws has 13 operators; edgekit handles at most 12"):
        parse_tflite(kws_bytes, name="kws")


def test_unedited_repack_is_still_valid(kws_bytes):
    """The edits' packing itself changes nothing TFLite cares about: the failures above are the edits'."""
    graph = parse_tflite(edited(kws_bytes, lambda m: None), name="kws")
    assert len(graph.operators) == 13


def test_long_chain_is_linear(int8_model_path):
    """A 5,000-operator chain parses, validates and plans its memory in seconds (it took minutes when quadratic)."""
    import time

    from edgekit.analyze import layers

    chain = long_chain(int8_model_path("ad").read_bytes(), 5000)
    started = time.monotonic()
    graph = parse_tflite(chain, name="chain")
    rows = layers(graph)
    assert len(rows) == 5000 and max(r["live_bytes"] for r in rows) == 256
    assert time.monotonic() - started < 30


def test_build_refuses_for_every_backend_what_tflite_micro_cannot_load(kws_bytes, tmp_path):
    """A softmax output scale other than 1/256 passes validation and the native backend could compile it, but
    TFLite Micro refuses to prepare it: no firmware, with TFLite Micro's own reason on one line."""
    import subprocess
    import sys

    import numpy as np

    from tests.graph_edits import _quant

    model = tmp_path / "kws_softmax.tflite"
    model.write_bytes(edited(kws_bytes, _quant(34, "scale", np.array([0.5], dtype=np.float32))))
    parse_tflite(model.read_bytes())  # a valid graph: the refusal is TFLite Micro's
    out = tmp_path / "build"
    child = subprocess.run([sys.executable, "-m", "edgekit", "build", str(model), "--board", "host", "--backend",
                            "native", "--no-compile", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert child.returncode == 1 and "Traceback" not in child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1 and "kws_softmax cannot be" in lines[0] and "TFLite Micro cannot load" in lines[0]
    assert "SOFTMAX" in lines[0] and "scale" in lines[0]
    assert not out.exists()
