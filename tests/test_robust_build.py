"""Build outputs under faults: interrupts (SIGINT, SIGTERM, SIGKILL) during the compile, a failing compiler, two
builds into one folder, and model file names the device cannot report as they are.

The compile is made slow and observable with a compiler shim on $CC (the host board compiles with $CC): it writes
its pid (and its own child's) to a file, then waits, fails, or waits for a "go" file and runs the real compiler.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from edgekit.build import MANIFEST, build
from edgekit.errors import EdgekitError

SHIM = """#!/bin/sh
echo $$ >> "$EK_TEST_PIDS"
case "$EK_TEST_MODE" in
  fail) echo "shim.c:1:1: error: the test compiler refuses" >&2; exit 1 ;;
  hang) echo "temporary" > "${TMPDIR:-/tmp}/cc$$.s"  # as gcc does; a killed compiler never deletes it
        sleep 300 & echo $! >> "$EK_TEST_PIDS"; wait ;;
  gate) while [ ! -e "$EK_TEST_GO" ]; do sleep 0.05; done; exec "$EK_REAL_CC" "$@" ;;
esac
"""


@pytest.fixture
def shim(tmp_path, monkeypatch):
    """Environment for a build whose compiler is the shim; `mode` is hang, fail or gate."""
    real = shutil.which("cc") or shutil.which("gcc")
    if real is None:
        pytest.skip("no host C compiler")
    path = tmp_path / "shim-cc"
    path.write_text(SHIM)
    path.chmod(0o755)
    (tmp_path / "tmp").mkdir()

    def env(mode: str) -> dict:
        pids = tmp_path / f"pids-{mode}"
        pids.unlink(missing_ok=True)
        return {**os.environ, "CC": str(path), "EK_TEST_MODE": mode, "EK_TEST_PIDS": str(pids),
                "EK_TEST_GO": str(tmp_path / "go"), "EK_REAL_CC": real, "TMPDIR": str(tmp_path / "tmp"),
                "PYTHONPATH": os.pathsep.join(sys.path)}

    return env


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _good_build(model, out):
    build(model, "host", out, quiet=True)
    assert (out / MANIFEST).is_file() and (out / "build" / "firmware").is_file()
    return _snapshot(out)


def _start(env, model, out):
    return subprocess.Popen([sys.executable, "-m", "edgekit", "build", str(model), "--board", "host", "-o", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_pids(env, count, process, timeout=120.0) -> list[int]:
    deadline = time.monotonic() + timeout
    path = env["EK_TEST_PIDS"]
    while time.monotonic() < deadline:
        if os.path.exists(path):
            pids = [int(line) for line in open(path).read().split()]
            if len(pids) >= count:
                return pids
        if process.poll() is not None:
            pytest.fail(f"edgekit ended before compiling: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("the compiler shim never ran")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks children in /proc")
@pytest.mark.parametrize("sig, code, line", [(signal.SIGINT, 130, "error: interrupted"),
                                             (signal.SIGTERM, 143, "error: terminated (SIGTERM)")])
def test_interrupt_during_compile_keeps_the_previous_build(int8_model_path, tmp_path, shim, sig, code, line):
    model, out = int8_model_path("ad"), tmp_path / "outputs" / "ad"
    before = _good_build(model, out)
    env = shim("hang")
    process = _start(env, model, out)
    pids = _wait_for_pids(env, 2, process)
    assert not (out / MANIFEST).exists()  # the new folder is compiled in place, and has no manifest yet
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert err.strip().splitlines() == [line]
    assert _snapshot(out) == before  # byte for byte
    assert _hidden(out.parent) == []  # no staging, set-aside folder or lock file left
    assert not os.listdir(env["TMPDIR"])
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if _alive(pid)] == []  # the compiler and its child went with edgekit


def test_failing_compile_keeps_the_previous_build(int8_model_path, tmp_path, shim, monkeypatch):
    model, out = int8_model_path("ad"), tmp_path / "outputs" / "ad"
    before = _good_build(model, out)
    for key, value in shim("fail").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(EdgekitError, match="compiling for host failed: shim.c:1:1: error: the test compiler"):
        build(model, "host", out, quiet=True)
    assert _snapshot(out) == before
    assert _hidden(out.parent) == []


def test_a_failing_first_build_leaves_nothing(int8_model_path, tmp_path, shim, monkeypatch):
    for key, value in shim("fail").items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "outputs" / "ad"
    with pytest.raises(EdgekitError, match="compiling for host failed"):
        build(int8_model_path("ad"), "host", out, quiet=True)
    assert os.listdir(out.parent) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_build_is_undone_by_the_next_one(int8_model_path, tmp_path, shim, monkeypatch):
    model, out = int8_model_path("ad"), tmp_path / "outputs" / "ad"
    before = _good_build(model, out)
    env = shim("hang")
    process = _start(env, model, out)
    shim_pid, sleep_pid = _wait_for_pids(env, 2, process)
    process.kill()  # no cleanup at all
    process.communicate(timeout=30)
    try:
        deadline = time.monotonic() + 5
        while _alive(shim_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(shim_pid)  # the compiler died with edgekit (PR_SET_PDEATHSIG)
        assert ".ad.edgekit-old" in _hidden(out.parent) and not (out / MANIFEST).exists()
    finally:
        if _alive(sleep_pid):
            os.kill(sleep_pid, signal.SIGKILL)
    for key, value in shim("fail").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(EdgekitError, match="compiling for host failed"):  # the next build starts by undoing it
        build(model, "host", out, quiet=True)
    assert _snapshot(out) == before
    assert _hidden(out.parent) == []


def test_two_builds_into_one_folder(int8_model_path, tmp_path, shim):
    model, out = int8_model_path("ad"), tmp_path / "outputs" / "ad"
    env = shim("gate")
    first = _start(env, model, out)
    _wait_for_pids(env, 1, first)  # compiling, lock held
    second = subprocess.run([sys.executable, "-m", "edgekit", "build", str(model), "--board", "host", "-o",
                             str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"error: another edgekit build is writing {out} (pid {first.pid}); wait for it to finish or pick another "
        "output folder"]
    (tmp_path / "go").touch()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    manifest = json.loads((out / MANIFEST).read_text())
    assert (out / manifest["firmware"]).is_file()
    assert _hidden(out.parent) == []


@pytest.mark.parametrize("stem", ["ad?wh\u00e4t\nnext line", "a" * 100])
def test_odd_model_file_names_build_and_profile(int8_model_path, tmp_path, stem, monkeypatch):
    import tempfile

    from edgekit.codegen.common import device_model_name
    from edgekit.profile import profile_build

    logs = tmp_path / "tmp"
    logs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(logs))
    gone = subprocess.Popen(["true"])  # a pid that has ended
    gone.wait()
    (logs / f"edgekit-host-{gone.pid}-x1.log").write_text("left by a killed edgekit\n")

    model = tmp_path / f"{stem}.tflite"
    shutil.copyfile(int8_model_path("ad"), model)
    out = tmp_path / "out"
    result = build(model, "host", out, quiet=True)
    name = result["manifest"]["model_name"]
    assert name == device_model_name(stem) and len(name) <= 63 and name.isascii() and "\n" not in name
    report = profile_build(out, runs=2)
    assert report["runs"] == 2
    assert os.listdir(logs) == []  # its own session log, and the stale one of a dead edgekit
