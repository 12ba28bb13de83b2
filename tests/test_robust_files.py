"""Files and outputs under faults, through the CLI: every input that is not a regular file within its cap, and
every OSError while writing, is one line naming the path (and the errno's meaning), exit 1, no traceback, nothing
half-written; outputs follow the umask; with --json the error is also one JSON object on stdout."""

import json
import os
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgekit.errors import EdgekitError
from edgekit.fileio import MAX_DATA_BYTES, MAX_MODEL_BYTES, MAX_TEXT_BYTES
from tests.contract import one_line_error


def edgekit(*args, umask=None, env=None, timeout=60, stdout=subprocess.PIPE):
    def preexec():
        if umask is not None:
            os.umask(umask)

    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, preexec_fn=preexec,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def kws(int8_model_path):
    return int8_model_path("kws")


# -- inputs ----------------------------------------------------------------------------------------------------


def test_a_fifo_is_refused_at_once_not_read(tmp_path):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    done = edgekit("analyze", fifo, timeout=30)  # reading it would wait forever for a writer
    one_line_error(done, "FIFO", str(fifo), "512 MiB")


def test_a_character_device_and_a_folder_are_refused_with_the_cap(tmp_path):
    one_line_error(edgekit("analyze", "/dev/zero", timeout=30), "/dev/zero", "character device", "512 MiB")
    one_line_error(edgekit("analyze", tmp_path), "folder", "512 MiB")


def test_a_model_over_the_cap_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.truncate(MAX_MODEL_BYTES + 1)  # sparse: no disk used, and edgekit must not read it
    line = one_line_error(edgekit("analyze", big), str(big), "expected at most 512 MiB")
    assert "512.0 MiB" in line


def test_data_and_recipe_files_are_capped_and_must_be_regular(tmp_path):
    from edgekit.data import load_dataset
    from edgekit.recipe import load_recipe

    big = tmp_path / "x.npy"
    with open(big, "wb") as f:
        f.truncate(MAX_DATA_BYTES + 1)
    with pytest.raises(EdgekitError, match="expected at most 4 GiB"):
        load_dataset(big)
    fifo = tmp_path / "d.npz"
    os.mkfifo(fifo)
    with pytest.raises(EdgekitError, match="FIFO"):
        load_dataset(fifo)
    recipe = tmp_path / "edgekit.toml"
    with open(recipe, "wb") as f:
        f.truncate(MAX_TEXT_BYTES + 1)
    with pytest.raises(EdgekitError, match="recipe .* expected at most 16 MiB"):
        load_recipe(recipe)
    os.mkfifo(tmp_path / "r.toml")
    with pytest.raises(EdgekitError, match="recipe .* FIFO"):
        load_recipe(tmp_path / "r.toml")


# -- outputs: refused before any work --------------------------------------------------------------------------


def test_output_under_a_file_and_output_that_is_a_folder(kws, tmp_path):
    (tmp_path / "file").write_text("keep")
    one_line_error(edgekit("quantize", kws, "-o", tmp_path / "file" / "sub.tflite"), "file/sub.tflite",
                   "is a file, not a folder")
    (tmp_path / "existing").mkdir()
    one_line_error(edgekit("quantize", kws, "-o", tmp_path / "existing"), "existing", "is a folder")
    one_line_error(edgekit("analyze", kws, "--plot", tmp_path / "file" / "x.png"), "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "keep" and os.listdir(tmp_path / "existing") == []


def test_a_fifo_as_output_is_refused_not_replaced(kws, tmp_path):
    fifo = tmp_path / "plot.png"
    os.mkfifo(fifo)
    one_line_error(edgekit("analyze", kws, "--plot", fifo), "FIFO")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# -- outputs: file system faults ---------------------------------------------------------------------------------


@contextmanager
def tmpfs(folder: Path, options: str):
    """A small tmpfs at `folder`, or a skip saying why it cannot be mounted here."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "/dev/full covers ENOSPC on stdout")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_disk_leaves_nothing_half_written(kws, tmp_path):
    with tmpfs(tmp_path / "full", "size=4k") as full:
        one_line_error(edgekit("analyze", kws, "--plot", full / "layers.png"), "full/layers.png",
                       os.strerror(28))
        one_line_error(edgekit("build", kws, "--board", "host", "--no-compile", "-o", full / "b"), str(full),
                       os.strerror(28))
        assert os.listdir(full) == []  # no staging folder, no temporary neighbour


def test_read_only_file_system_keeps_the_previous_output(kws, tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m") as ro:
        (ro / "layers.png").write_bytes(b"previous good output")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        one_line_error(edgekit("analyze", kws, "--plot", ro / "layers.png"), "ro/layers.png", os.strerror(30))
        one_line_error(edgekit("build", kws, "--board", "host", "--no-compile", "-o", ro / "b"), "ro/b",
                       os.strerror(30))
        assert os.listdir(ro) == ["layers.png"] and (ro / "layers.png").read_bytes() == b"previous good output"


def test_stdout_on_a_full_device_is_one_line():
    with open("/dev/full", "w") as full:
        done = edgekit("boards", "--json", stdout=full)
    one_line_error(done, "standard output", os.strerror(28))
    assert "Exception ignored" not in done.stderr


# -- permissions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(kws, tmp_path, umask, file_mode, folder_mode):
    plot, out = tmp_path / "layers.png", tmp_path / "build"
    assert edgekit("analyze", kws, "--plot", plot, umask=umask).returncode == 0
    assert edgekit("build", kws, "--board", "host", "--no-compile", "-o", out, umask=umask).returncode == 0
    assert stat.S_IMODE(plot.stat().st_mode) == file_mode
    assert stat.S_IMODE(out.stat().st_mode) == folder_mode
    entries = list(out.rglob("*"))
    assert any(p.is_file() for p in entries) and any(p.is_dir() for p in entries)
    for p in entries:
        assert stat.S_IMODE(p.stat().st_mode) == (folder_mode if p.is_dir() else file_mode), p


# -- the error contract --------------------------------------------------------------------------------------------


def json_error(done) -> dict:
    document = json.loads(done.stdout)  # exactly one JSON document, nothing else on stdout
    assert set(document) == {"error", "kind"}
    return document


def test_json_errors_are_one_object_with_a_kind(kws, tmp_path):
    done = edgekit("analyze", tmp_path / "absent.tflite", "--json")
    line = one_line_error(done, "not found")
    assert json_error(done) == {"error": line[len("error: "):], "kind": "input"}
    done = edgekit("analyze", kws, "--no-such-option", "--json")
    one_line_error(done, "no-such-option", code=2)
    assert json_error(done)["kind"] == "usage"
    (tmp_path / "folder").mkdir()
    done = edgekit("quantize", kws, "-o", tmp_path / "folder", "--json")
    one_line_error(done, "is a folder")
    assert json_error(done)["kind"] == "io"
    done = edgekit("analyze", tmp_path / "absent.tflite")
    assert done.stdout == ""  # without --json, nothing on stdout


PROBE = """
import sys
from edgekit import cli
import edgekit.commands.boards as boards
def broken(*args, **kwargs):
    raise {exception}
boards.command.callback = broken
cli.main(sys.argv[1:])
"""


def probe(exception: str, *args, env=None):
    return subprocess.run([sys.executable, "-c", PROBE.format(exception=exception), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_an_unexpected_exception_is_an_internal_error_line_unless_debugging():
    done = probe("ZeroDivisionError('division by zero')", "boards", "--json", env={"EDGEKIT_DEBUG": ""})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("internal error: ZeroDivisionError: division by zero (please report")
    assert json.loads(done.stdout)["kind"] == "internal"
    debug = probe("ZeroDivisionError('division by zero')", "boards", env={"EDGEKIT_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ZeroDivisionError" in debug.stderr


def test_interrupt_and_stray_oserror_have_their_kinds():
    done = probe("KeyboardInterrupt()", "boards", "--json")
    assert done.returncode == 130 and json.loads(done.stdout) == {"error": "interrupted", "kind": "interrupted"}
    done = probe("PermissionError(13, 'Permission denied', '/some/where')", "boards", "--json")
    one_line_error(done, "/some/where", os.strerror(13))
    assert json.loads(done.stdout)["kind"] == "io"
