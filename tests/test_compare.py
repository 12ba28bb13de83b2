"""`edgekit compare`: every backend built and profiled on one board, side by side, on MLPerf Tiny's models.

Without a TFLite Micro tree (CI) the tflm backends are skipped with the reason and the native one still runs; the
test with TFLM_DIR (reference kernels) and TFLM_DIR_CMSIS_NN (CMSIS-NN kernels) skips without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from edgekit.tflite_model import load_tflite
from edgekit.tflm_library import is_tree, tree_kernels
from tests.contract import one_line_error

HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=3000)


def _env_without_trees(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TFLM_DIR", "TFLM_DIR_CMSIS_NN")}
    env["EDGEKIT_CACHE"] = str(tmp_path / "cache")
    return env


@needs_qemu
def test_without_a_tree_native_runs_and_tflm_is_skipped_with_the_reason(int8_model_path, tmp_path):
    model = int8_model_path("ad")
    out = tmp_path / "cmp"
    done = _cli("compare", model, "--board", "mps2-an386", "-o", out, "--runs", "2", "--json",
                env=_env_without_trees(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert json.loads((out / "compare.json").read_text()) == document
    assert document["metric"] == "instructions" and document["emulated"] and document["runs"] == 2
    entries = {e["backend"]: e for e in document["backends"]}
    assert list(entries) == ["native", "tflm-reference", "tflm-cmsis-nn"]
    for name, kernels in (("tflm-reference", "reference"), ("tflm-cmsis-nn", "cmsis-nn")):
        assert entries[name]["status"] == "skipped"
        assert entries[name]["reason"].startswith(f"no TFLite Micro tree with {kernels} kernels")
        assert "create_tflm_tree.py" in entries[name]["reason"]
    native = entries["native"]
    assert native["status"] == "ok" and native["max_abs_diff_reference"] == 0 and native["deterministic"]
    graph = load_tflite(model)
    # AD is ten FULLY_CONNECTED layers; the instructions of the layers fit in the whole inference's
    assert native["ops"]["FULLY_CONNECTED"]["layers"] == 10 == len(graph.operators)
    assert 0 < native["ops"]["FULLY_CONNECTED"]["instructions"] <= native["instructions"]
    # its weights are read-only data, apart from the code, both inside the flash image
    weights = sum(t.data.nbytes for t in graph.tensors if t.data is not None)
    assert weights <= native["rodata_bytes"] and native["code_bytes"] > 0
    assert native["code_bytes"] + native["rodata_bytes"] <= native["flash_bytes"]
    assert 0 < native["arena_bytes"] <= native["arena_reserved_bytes"] and native["stack_bytes"] > 0
    assert document["pairs"] == []  # one backend ran
    assert [row["op"] for row in document["by_op"]] == ["FULLY_CONNECTED"]


def _tree(variable: str, kernels: str):
    path = os.environ.get(variable)
    if not path or not is_tree(path) or tree_kernels(path) != kernels:
        pytest.skip(f"set {variable} to a TFLite Micro tree with {kernels} kernels made by create_tflm_tree.py")
    return path


@needs_qemu
@pytest.mark.slow
def test_three_backends_side_by_side_on_qemu_agree_bit_for_bit(int8_model_path, tmp_path):
    from edgekit.compare import compare

    reference, cmsis = _tree("TFLM_DIR", "reference"), _tree("TFLM_DIR_CMSIS_NN", "cmsis-nn")
    document = compare(int8_model_path("kws"), "mps2-an386", None, out_dir=tmp_path / "kws", runs=1,
                       tflm_dirs=(cmsis, reference), env={})
    entries = {e["backend"]: e for e in document["backends"]}
    assert all(e["status"] == "ok" for e in entries.values()), entries
    assert entries["tflm-cmsis-nn"]["tree"] == str(os.path.realpath(cmsis))
    for e in entries.values():
        assert e["max_abs_diff_reference"] == 0 and e["arena_bytes"] > 0 and e["stack_bytes"] > 0
        assert e["code_bytes"] > 0 and e["rodata_bytes"] > 0
    assert {(p["a"], p["b"]): p["max_abs_diff"] for p in document["pairs"]} == {
        ("native", "tflm-reference"): 0, ("native", "tflm-cmsis-nn"): 0, ("tflm-reference", "tflm-cmsis-nn"): 0}
    conv = next(row for row in document["by_op"] if row["op"] == "CONV_2D")
    assert all(conv["instructions"][name] > 0 for name in entries)
    # TFLite Micro runs each operator as a layer, RESHAPE included
    assert sum(entries["tflm-reference"]["ops"][op]["layers"] for op in entries["tflm-reference"]["ops"]) == \
        len(load_tflite(int8_model_path("kws")).operators)
    # CMSIS-NN's kernels use the M4's DSP instructions: fewer instructions than the reference ones
    assert entries["tflm-cmsis-nn"]["instructions"] < entries["tflm-reference"]["instructions"]


def test_bad_backends_and_outputs_are_one_line_errors(int8_model_path, tmp_path):
    model = int8_model_path("ad")
    done = _cli("compare", model, "--board", "mps2-an386", "--backends", "native,tvm", "--json")
    one_line_error(done, "unknown backend 'tvm'", "native, tflm-reference, tflm-cmsis-nn", code=2)
    assert json.loads(done.stdout)["kind"] == "usage"
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    done = _cli("compare", model, "--board", "mps2-an386", "-o", a_file)
    one_line_error(done, "is a file; expected a folder", code=2)
    assert a_file.read_text() == "mine"
    done = _cli("compare", model, "--board", "mps2-an386", "--tflm-dir", tmp_path)
    one_line_error(done, "is not a TFLite Micro tree", code=2)
    # a model that is not one fails before the output folder exists
    not_a_model = tmp_path / "notes.tflite"
    not_a_model.write_bytes(b"not a flatbuffer")
    done = _cli("compare", not_a_model, "--board", "mps2-an386", "-o", tmp_path / "never")
    one_line_error(done)
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("arm-none-eabi-gcc")),
                    reason="needs cmake and arm-none-eabi-gcc")
def test_a_real_board_without_a_device_gets_its_sizes_and_what_is_missing(int8_model_path, tmp_path):
    from edgekit.compare import compare

    document = compare(int8_model_path("ad"), "nucleo-l4r5zi", "native,tflm-reference", out_dir=tmp_path / "n",
                       env={})
    assert document["measured"] is False and document["metric"] is None
    assert document["missing"] == ("no device: connect a nucleo-l4r5zi and pass --port to measure latency, arena "
                                   "and stack")
    native, tflm = document["backends"]
    assert native["status"] == "built" and native["reason"] == document["missing"]
    assert native["instructions"] is None and native["latency_us"] is None and native["arena_bytes"] is None
    assert native["rodata_bytes"] > 270_000 and native["code_bytes"] > 0  # AD's weights, in the board's flash
    assert tflm["status"] == "skipped" and tflm["reason"].startswith("no TFLite Micro tree with reference kernels")
    assert document["pairs"] == [] and document["by_op"] == []
