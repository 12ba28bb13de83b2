"""Failure classes found by a hostile sweep of the whole CLI (every command, its options, wrong file kinds), one
test per class: each asserts the fix on the real MLPerf Tiny KWS model or a semantic edit of it."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.graph_edits import edited
from tests.test_robust_files import edgekit, one_line_error


@pytest.fixture(scope="module")
def kws(int8_model_path):
    return int8_model_path("kws")


@pytest.mark.parametrize("args, fragment", [
    (["quantize", "m.keras", "--eval-samples", "0"], "--eval-samples: 0 is out of range"),
    (["quantize", "m.keras", "--calibration-samples", "-5"], "--calibration-samples: -5 is out of range"),
    (["profile", "b", "--timeout", "inf"], "--timeout: inf is not a finite number"),
    (["optimize", "m.keras", "--recover-within", "nan"], "--recover-within: nan is not a finite number"),
    (["optimize", "m.keras", "--max-epochs", "0"], "--max-epochs: 0 is out of range"),
    (["optimize", "m.keras", "--epochs", "100000000000"], "expected a whole number from 0 to 10,000"),
    (["build", "m.tflite", "--runs", "99999999999999999999999", "--profile"], "--runs"),
    (["build", "m.tflite", "--board", ""], "--board: is empty"),
    (["analyze", "", "--json"], "MODEL: is empty"),
])
def test_numbers_and_empty_values_are_refused_before_any_work(args, fragment):
    """Shared option checks (cli.checked_options): a count of 0 crashed quantize, nan/inf and absurd counts were
    accepted (an epoch count of 10^11 never ended), '' meant the default."""
    done = edgekit(*args)
    one_line_error(done, fragment, code=2)
    if "--json" in args:
        assert '"kind": "usage"' in done.stdout


@pytest.mark.parametrize("flags, fragment", [
    (["--runs", "5"], "--runs is the number of inferences of --profile"),
    (["--port", "/dev/ttyUSB9"], "--port is the board's serial port"),
    (["--profile", "--no-compile"], "--no-compile builds none"),
])
def test_build_refuses_options_that_mean_nothing_together(kws, tmp_path, flags, fragment):
    """They were ignored (exit 0), or failed after the project was generated."""
    done = edgekit("build", kws, "--board", "host", "-o", tmp_path / "o", *flags)
    one_line_error(done, fragment, code=2)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("idf.py") is not None, reason="ESP-IDF is installed: the esp32 project compiles")
def test_flash_of_a_project_that_cannot_compile_leaves_no_output(kws, tmp_path):
    """`build --flash` for a board whose SDK is missing wrote the project, then failed: a failed command left a
    build folder. It now fails before the folder is kept, and an earlier build in that -o survives."""
    out = tmp_path / "esp"
    one_line_error(edgekit("build", kws, "--board", "esp32", "-o", out, "--flash"), "cannot flash", "idf.py")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    edgekit("build", kws, "--board", "esp32", "-o", out)  # generated, with the command to build it by hand
    before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    one_line_error(edgekit("build", kws, "--board", "esp32", "-o", out, "--profile"), "cannot profile")
    assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == before


def test_build_never_replaces_a_folder_it_did_not_build(kws, tmp_path):
    """`-o` naming a user's folder deleted its files; non-UTF-8 output paths crashed the compile."""
    folder = tmp_path / "o"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    one_line_error(edgekit("build", kws, "--board", "host", "-o", folder, "--no-compile"),
                   "a folder that edgekit did not build")
    assert (folder / "thesis.txt").read_text() == "precious"
    done = subprocess_bytes([b"build", str(kws).encode(), b"--board", b"host", b"-o",
                             str(tmp_path).encode() + b"/o\xff", b"--no-compile"])
    one_line_error(done, "is not a UTF-8 path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def subprocess_bytes(argv):
    """The CLI run with raw bytes arguments (paths that are not UTF-8)."""
    import os
    import subprocess
    from types import SimpleNamespace

    done = subprocess.run([sys.executable.encode(), b"-m", b"edgekit", *argv], capture_output=True, timeout=60,
                          env=os.environ)
    return SimpleNamespace(returncode=done.returncode, stdout=done.stdout.decode(errors="replace"),
                           stderr=done.stderr.decode(errors="replace"))


def test_quantize_refuses_to_write_over_its_own_inputs(kws, tmp_path):
    """`-o` naming the model or the data replaced it with the int8 result."""
    model = tmp_path / "m.tflite"
    model.write_bytes(kws.read_bytes())
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 49, 10, 1), np.float32))
    for output in (model, data):
        before = output.read_bytes()
        one_line_error(edgekit("quantize", model, "--data", data, "-o", output), "is the input", code=2)
        assert output.read_bytes() == before


def test_analyze_refuses_a_model_no_reference_interpreter_runs(kws, tmp_path):
    """A FULLY_CONNECTED with a float output in an int8 graph: TFLite Micro and LiteRT both refuse it, analyze
    reported its figures with exit 0. One only TFLite Micro refuses (pool scales differ) is still analyzed."""

    def float_output(m):
        m.subgraphs[0].tensors[33].type = 0  # FLOAT32

    def pool_scale(m):
        quant = m.subgraphs[0].tensors[31].quantization
        quant.scale = quant.scale * 2

    broken = tmp_path / "fc_float.tflite"
    broken.write_bytes(edited(kws.read_bytes(), float_output))
    one_line_error(edgekit("analyze", broken), "cannot be run by any reference interpreter", "TFLite Micro",
                   "LiteRT")
    litert_only = tmp_path / "pool_scale.tflite"
    litert_only.write_bytes(edited(kws.read_bytes(), pool_scale))
    done = edgekit("analyze", litert_only)
    assert done.returncode == 0 and "TFLite Micro cannot load this model" in done.stderr, done.stderr[-1000:]


@pytest.mark.parametrize("text, fragment", [
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"board": "host", "firmware": {"a": 1}}', "'firmware' is {\"a\": 1}; expected text"),
    ('{"board": "host", "macs": NaN}', "'macs' is NaN; expected a whole number"),
    ('{"board": "host", "firmware": "../../bin/true"}', "outside the build folder"),
], ids=["deep", "wrong-type", "nan", "escaping-path"])
def test_flash_and_profile_refuse_an_edited_manifest_naming_the_key(tmp_path, text, fragment):
    """A RecursionError, a TypeError and a NaN conversion were internal errors; a firmware path could escape."""
    (tmp_path / "edgekit-build.json").write_text(text)
    for command in ("flash", "profile"):
        one_line_error(edgekit(command, tmp_path), fragment)


def test_compare_and_tune_make_no_folder_for_inputs_they_refuse(kws, tmp_path):
    """Both made their output folder before reading the model or the data, so a refused input left an empty or
    half-filled folder behind; tune read a FIFO or /dev/zero as its model for ever (hashing it)."""
    digits = Path(__file__).parents[1] / "examples" / "digits"
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([object(), 1], dtype=object))
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    one_line_error(edgekit("compare", garbage, "--board", "host", "-o", out), "not a TFLite flatbuffer")
    one_line_error(edgekit("compare", kws, "--board", "host", "--data", objects, "-o", out, timeout=300),
                   "holds Python objects")
    one_line_error(edgekit("tune", fifo, "--data", digits / "digits.npz", "--board", "host", "-o", out),
                   "is not a regular file")
    one_line_error(edgekit("tune", digits / "digits_cnn.keras", "--data", objects, "--board", "host",
                           "--trials", "1", "--analysis-only", "-o", out, timeout=300), "holds Python objects")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
