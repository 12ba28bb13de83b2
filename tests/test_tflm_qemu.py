"""TFLite Micro on the host and QEMU boards: the TFLM backend behind the same application and platform layer as
the native build, linked against a cached libtflm.a built from a real TFLite Micro tree.

TFLite Micro's sources are on no package registry: the tests that compile find a tree through TFLM_DIR (reference
kernels, or any), TFLM_DIR_CMSIS_NN (a tree made with OPTIMIZED_KERNEL_DIR=cmsis_nn) and skip without them. The
tests without a tree check what a user without one gets: the project, and one line saying how to get a tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.build import build
from edgekit.errors import UsageError
from edgekit.tflite_model import load_tflite
from edgekit.tflm_library import find_tree, is_tree, tree_kernels
from tests.contract import one_line_error

NO_TREE = "set TFLM_DIR to a TFLite Micro tree made by create_tflm_tree.py"
HAVE_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++"))


def _tree(variable: str, kernels: str | None = None) -> Path:
    path = os.environ.get(variable)
    if not path or not is_tree(path):
        pytest.skip(f"{NO_TREE} ({variable}; with OPTIMIZED_KERNEL_DIR=cmsis_nn for TFLM_DIR_CMSIS_NN)")
    if kernels and tree_kernels(path) != kernels:
        pytest.skip(f"{variable}={path} has {tree_kernels(path)} kernels, this test needs {kernels}")
    return Path(path)


@pytest.fixture(scope="session")
def tflm_cache(tmp_path_factory) -> Path:
    """$EDGEKIT_CACHE when set (a warm cache), else one for the session: the library is compiled once."""
    return Path(os.environ.get("EDGEKIT_CACHE") or tmp_path_factory.mktemp("edgekit-cache"))


@pytest.fixture
def no_tflm_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TFLM_DIR", raising=False)
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))


def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=3000)


# ---------------------------------------------------------------------------------------------------------------
# Without a tree


@pytest.mark.parametrize("board", ["mps2-an386", "host"])
def test_without_a_tree_the_project_is_generated_and_says_how_to_get_one(int8_model_path, tmp_path, no_tflm_env,
                                                                         board):
    out = tmp_path / "ad"
    result = build(int8_model_path("ad"), board, out, backend="tflm", quiet=True)
    compile_stage = result["stages"][-1]
    assert compile_stage["stage"] == "compile"
    assert compile_stage["skipped"].startswith("Generated; set TFLM_DIR to compile")
    assert "create_tflm_tree.py" in compile_stage["skipped"]
    manifest = json.loads((out / "edgekit-build.json").read_text())
    assert manifest["backend"] == "tflm" and manifest["project"] == ("host" if board == "host" else "qemu")
    assert manifest["firmware"] is None
    for name in ("app/edgekit_app.c", "model/edgekit_backend_tflm.cc", "model/op_resolver.h",
                 "model/tflm_platform.cc", "Makefile"):
        assert (out / name).is_file(), name
    assert "AddFullyConnected" in (out / "model/op_resolver.h").read_text()
    if board != "host":
        assert (out / "platform/link.ld").is_file() and (out / "platform/startup.c").is_file()


def test_flash_without_a_tree_names_the_way_to_a_tree(int8_model_path, tmp_path, no_tflm_env):
    env = {k: v for k, v in os.environ.items() if k != "TFLM_DIR"}
    done = _cli("build", int8_model_path("ad"), "--board", "mps2-an386", "--backend", "tflm", "-o", tmp_path / "o",
                "--flash", env=env)
    one_line_error(done, "cannot flash", "Generated; set TFLM_DIR to compile", "create_tflm_tree.py")


def test_a_folder_that_is_no_tree_is_refused_before_anything_is_written(int8_model_path, tmp_path, no_tflm_env):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o"
    with pytest.raises(UsageError, match="is not a TFLite Micro tree .*create_tflm_tree.py"):
        build(int8_model_path("ad"), "mps2-an386", out, backend="tflm", tflm_dir=tmp_path / "empty", quiet=True)
    assert not out.exists()


def test_kernels_the_tree_does_not_carry_are_refused_with_the_tree_to_make(tmp_path):
    tree = tmp_path / "tree"
    (tree / "tensorflow/lite/micro").mkdir(parents=True)
    (tree / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    assert find_tree(tree, env={}).kernels == "reference"
    with pytest.raises(UsageError, match="has reference kernels .*OPTIMIZED_KERNEL_DIR=cmsis_nn"):
        find_tree(tree, "cmsis-nn", env={})
    (tree / "tensorflow/lite/micro/kernels/cmsis_nn").mkdir(parents=True)
    assert find_tree(None, env={"TFLM_DIR": str(tree)}).kernels == "cmsis-nn"
    with pytest.raises(UsageError, match="has cmsis-nn kernels .*without OPTIMIZED_KERNEL_DIR"):
        find_tree(tree, "reference", env={})
    assert find_tree(None, env={}) is None


def test_tflm_options_with_the_native_backend_are_refused(int8_model_path, tmp_path):
    with pytest.raises(UsageError, match="apply to the tflm backend"):
        build(int8_model_path("ad"), "mps2-an386", tmp_path / "o", backend="native", tflm_kernels="reference",
              quiet=True)


# ---------------------------------------------------------------------------------------------------------------
# With a tree: build, boot, profile


def _build_and_profile(model, board, out, tree, cache):
    env = dict(os.environ, EDGEKIT_CACHE=str(cache))
    done = _cli("build", model, "--board", board, "--backend", "tflm", "--tflm-dir", tree, "-o", out, "--flash",
                "--profile", "--runs", "2", "--json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _check_profile(result, model):
    graph = load_tflite(model)
    profile = result["profile"]
    assert profile["max_abs_diff"] == 0
    names = [layer["op"] for layer in profile["layers"]]
    assert names == [op.opcode for op in graph.operators]  # TFLite Micro's own operator names, one per operator
    # measured on the target: interpreter->arena_used_bytes() after AllocateTensors()
    assert 0 < profile["arena_bytes"] <= profile["arena_reserved_bytes"] == result["manifest"]["arena_bytes"]
    return profile


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-arm / arm-none-eabi-g++ not installed")
@pytest.mark.parametrize("variable,kernels", [("TFLM_DIR", None), ("TFLM_DIR_CMSIS_NN", "cmsis-nn")])
@pytest.mark.parametrize("name", ["ad", "kws"])
def test_tflm_in_qemu_is_bit_exact_profiled_per_layer_and_cached(int8_model_path, tmp_path, tflm_cache, variable,
                                                                  kernels, name):
    tree = _tree(variable, kernels)
    cache = tflm_cache
    model = int8_model_path(name)
    first = _build_and_profile(model, "mps2-an386", tmp_path / "a", tree, cache)
    _check_profile(first, model)
    assert first["manifest"]["tflm_library"]["kernels"] == tree_kernels(tree)
    assert "instructions" in first["profile"]
    second = _build_and_profile(model, "mps2-an386", tmp_path / "b", tree, cache)
    library = second["manifest"]["tflm_library"]
    assert library["cache_hit"] is True and library["compiled"] == 0  # nothing of TFLite Micro recompiled
    assert library["library"] == first["manifest"]["tflm_library"]["library"]
    assert second["profile"]["instructions"] == first["profile"]["instructions"]


@pytest.mark.slow
@pytest.mark.parametrize("variable,kernels", [("TFLM_DIR", "reference"), ("TFLM_DIR_CMSIS_NN", "cmsis-nn")])
@pytest.mark.parametrize("name", ["ad", "kws"])
def test_tflm_on_the_host_is_bit_exact_and_profiled_per_layer(int8_model_path, tmp_path, tflm_cache, name, variable,
                                                              kernels):
    """CMSIS-NN too: its kernels have a portable C path besides the DSP and MVE ones, which the host runs."""
    tree = _tree(variable, kernels)
    cache = tflm_cache
    model = int8_model_path(name)
    result = _build_and_profile(model, "host", tmp_path / "h", tree, cache)
    _check_profile(result, model)
    assert result["manifest"]["tflm_library"]["kernels"] == result["manifest"]["tflm_kernels"] == kernels


# ---------------------------------------------------------------------------------------------------------------
# The cmake-arm project for a real board against the same tree


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws", "vww", "ic", "ic_large", "ad", "sww"])
def test_cmake_arm_project_compiles_against_the_tree_with_ndebug(int8_model_path, tmp_path, name, monkeypatch):
    """Each model's own sources (model array, settings with its scales, the backend, the board layer) compile
    against the tree with the flags CMake gives TFLite Micro, which carry NDEBUG and not
    TF_LITE_STRIP_ERROR_STRINGS. (The library itself is the same for every model; compiling it six times would
    take over an hour here.)"""
    tree = _tree("TFLM_DIR_CMSIS_NN", "cmsis-nn") if os.environ.get("TFLM_DIR_CMSIS_NN") else _tree("TFLM_DIR")
    if not (shutil.which("cmake") and HAVE_QEMU):
        pytest.skip("cmake / arm-none-eabi-g++ not installed")
    monkeypatch.delenv("TFLM_DIR", raising=False)
    out = tmp_path / name
    build(int8_model_path(name), "nucleo-l4r5zi", out, backend="tflm", compile=False, quiet=True)
    build_dir = out / "build"
    subprocess.run(["cmake", "-S", str(out), "-B", str(build_dir), f"-DTFLM_DIR={tree}",
                    "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"], check=True, capture_output=True, timeout=600)
    commands = json.loads((build_dir / "compile_commands.json").read_text())
    library = [c for c in commands if str(tree) in c["file"]]
    assert library and all(re.search(r"(^| )-DNDEBUG( |$)", c["command"]) for c in library)
    assert not any("TF_LITE_STRIP_ERROR_STRINGS" in c["command"] for c in commands)
    # the tree's clock (cortex_m_generic's needs a CMSIS device header no tree carries) is the board layer's
    assert not any(c["file"].endswith("micro_time.cc") for c in library)
    done = subprocess.run(["cmake", "--build", str(build_dir), "--target", "edgekit_platform"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:]
    for source in ("edgekit_backend_tflm.cc", "debug_log.cc"):
        entry = next(c for c in commands if c["file"].endswith(f"src/{source}"))
        command = re.sub(r" -o \S+", " -fsyntax-only", entry["command"])
        done = subprocess.run(command, shell=True, cwd=entry["directory"], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
