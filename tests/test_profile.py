"""`edgekit profile`: against the protocol simulator running a real MLPerf Tiny model (outputs from TFLite Micro,
faults on demand) as a host-board program, and end to end on native builds in QEMU."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.build import build as build_project
from edgekit.errors import EdgekitError
from edgekit.flash import load_build, open_device
from edgekit.profile import profile_build
from edgekit.reference import run_reference
from edgekit.tflite_model import load_tflite

SIMULATOR = Path(__file__).with_name("test_device.py")
needs_qemu = pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                                reason="qemu-system-arm / arm-none-eabi-gcc not installed")


def _fake_build(folder: Path, model: Path, *faults) -> Path:
    """A host-board build folder whose 'firmware' is the protocol simulator serving `model`."""
    folder.mkdir(parents=True)
    shutil.copyfile(model, folder / "model.tflite")
    flags = " ".join(f"--fault={f}" for f in faults)
    program = folder / "device.sh"
    program.write_text(f"#!/bin/sh\nexec {sys.executable} {SIMULATOR} --serve --model model.tflite {flags}\n")
    program.chmod(0o755)
    manifest = {"board": "host", "backend": "native", "model": "model.tflite", "firmware": "device.sh",
                "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    (folder / "edgekit-build.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def kws(int8_model_path):
    return int8_model_path("kws")


def _edgekit(*args, timeout=60):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    return done, time.monotonic() - started


def test_profile_reports_latency_memory_and_agreement(kws, tmp_path):
    build = _fake_build(tmp_path / "b", kws)
    report = profile_build(build, runs=6, plot=tmp_path / "layers.png", seed=3)
    graph = load_tflite(kws)
    # The simulator's tick count is 1000 + (sum of the input bytes) % 97 at 1 MHz: recompute it from the inputs.
    rng = np.random.default_rng(3)
    tin = graph.input_tensors()[0]
    inputs = rng.integers(-128, 128, size=(6, *tin.shape), dtype=np.int8)
    ticks = [1000 + sum(x.tobytes()) % 97 for x in inputs]
    assert report["latency_us"] == {"min": min(ticks), "median": float(np.median(ticks)), "max": max(ticks)}
    assert (report["arena_bytes"], report["arena_reserved_bytes"], report["stack_bytes"]) == (3000, 4096, 512)
    assert report["max_abs_diff"] == 0 and report["top1_agreement"] == 1.0 and report["cosine"] == 1.0
    assert report["rmse"] == 0 and report["deterministic"] and report["accuracy"] is None
    assert [row["op"] for row in report["layers"]] == [op.opcode for op in graph.operators]
    assert report["macs"] == 2_656_768 and "instructions" not in report  # the host board is not emulated
    assert report["latency_kind"] == "host computer" and report["flash_bytes"] is None
    png = (tmp_path / "layers.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_a_one_step_difference_is_caught(kws, tmp_path):
    report = profile_build(_fake_build(tmp_path / "b", kws, "wrong"), runs=4)
    assert report["max_abs_diff"] == 1 and report["mismatched_values"] == 4
    assert 0.99 < report["cosine"] < 1.0 and report["rmse"] > 0


def test_data_is_quantized_and_accuracy_counted(kws, tmp_path):
    graph = load_tflite(kws)
    tin = graph.input_tensors()[0]
    scale, zero_point = float(tin.scale[0]), int(tin.zero_point[0])
    rng = np.random.default_rng(0)
    x = rng.uniform(-100 * scale, 100 * scale, size=(8, 49, 10, 1)).astype(np.float32)
    q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    predicted = run_reference(kws.read_bytes(), q).argmax(axis=1)
    labels = predicted.copy()
    labels[::2] = (labels[::2] + 1) % 12  # every other label wrong: accuracy exactly 1/2
    np.savez(tmp_path / "data.npz", x=x, y=labels)
    np.savez(tmp_path / "test.npz", x_train=x, y_train=labels, x_test=x, y_test=labels)
    report = profile_build(_fake_build(tmp_path / "b", kws), data=tmp_path / "test.npz")
    assert report["runs"] == 8 and report["max_abs_diff"] == 0
    assert report["accuracy"] == 0.5 and report["reference_accuracy"] == 0.5
    with pytest.raises(EdgekitError, match="samples in .* have shape|expects"):
        np.save(tmp_path / "bad.npy", x[:, :40])
        profile_build(tmp_path / "b", data=tmp_path / "bad.npy")


def test_stale_build_or_device_is_refused(kws, tmp_path):
    build = _fake_build(tmp_path / "b", kws)
    manifest = json.loads((build / "edgekit-build.json").read_text())
    (build / "edgekit-build.json").write_text(json.dumps({**manifest, "model_name": "kws_ref_model"}))
    with pytest.raises(EdgekitError, match="the device runs model 'simulated' but the build is 'kws_ref_model'"):
        profile_build(build, runs=1)
    (build / "edgekit-build.json").write_text(json.dumps({**manifest, "model_sha256": "0" * 64}))
    with pytest.raises(EdgekitError, match="model.tflite changed since the build"):
        profile_build(build, runs=1)
    del manifest["model_sha256"]
    (build / "edgekit-build.json").write_text(json.dumps(manifest))
    with pytest.raises(EdgekitError, match="has no 'model_sha256', so nothing ties model.tflite to the firmware"):
        profile_build(build, runs=1)


def test_init_failure_is_reported(kws, tmp_path):
    with pytest.raises(EdgekitError, match="the device reported init failed: arena too small at start"):
        profile_build(_fake_build(tmp_path / "b", kws, "initfail"), runs=1)


def test_garbage_and_split_lines_still_profile(kws, tmp_path):
    done, _ = _edgekit("profile", _fake_build(tmp_path / "b", kws, "garbage", "split"), "--runs", 3, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in ("latency_us", "arena_bytes", "stack_bytes", "flash_bytes", "max_abs_diff", "top1_agreement"):
        assert key in report
    assert report["max_abs_diff"] == 0


@pytest.mark.parametrize("fault, message", [
    # the first inference never ends: given up after the warm-up's 1 s, not after the 2 inferences of 'infer 1 1'
    ("silence", "no answer from host program device.sh to 'infer 1 1' within 1 s for 1 warm-up inference "
                "(--timeout 1 s each)"),
    ("reset", "reset during 'infer 1 1'"),
    ("die", "host program device.sh closed its output: it exited with status 3"),
])
def test_misbehaving_device_is_one_clear_line(kws, tmp_path, fault, message):
    build = _fake_build(tmp_path / "b", kws, fault)
    done, elapsed = _edgekit("profile", build, "--runs", 2, "--timeout", 1)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert elapsed < 10


def test_wrong_port_is_one_clear_line(kws, tmp_path):
    done, elapsed = _edgekit("profile", _fake_build(tmp_path / "b", kws), "--port", "socket://127.0.0.1:1")
    assert done.returncode == 1 and done.stderr.startswith("error: cannot open serial port socket://127.0.0.1:1")
    assert elapsed < 10


# -- end to end: edgekit build (native backend) for mps2-an386, run in QEMU --------------------------------------


@needs_qemu
@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws", "ad"])
def test_native_build_in_qemu_matches_the_reference(int8_model_path, tmp_path, name):
    out = tmp_path / name
    done, _ = _edgekit("build", int8_model_path(name), "--board", "mps2-an386", "--backend", "native",
                       "-o", out, timeout=600)
    assert done.returncode == 0, done.stderr
    done, _ = _edgekit("profile", out, "--runs", 3, "--json", "--plot", tmp_path / "layers.png", timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["max_abs_diff"] == 0
    assert report["top1_agreement"] == (1.0 if name == "kws" else None)  # AD is an autoencoder: no top-1
    assert report["emulated"] and "emulated" in report["latency_kind"]
    ins = report["instructions"]
    assert 0 < ins["min"] <= ins["median"] <= ins["max"] < 1.01 * ins["min"]  # -icount makes runs repeatable
    assert report["macs"] and 0.2 < report["instructions_per_mac"] < 50
    assert report["arena_bytes"] > 0 and report["stack_bytes"] > 0 and report["flash_bytes"] > 0
    assert sum(row["instructions"] for row in report["layers"]) <= ins["max"]


@needs_qemu
@pytest.mark.slow
def test_qemu_killed_mid_profile(int8_model_path, tmp_path):
    """The emulator dies under a running `edgekit profile`: one clear line, promptly, and nothing left behind."""
    from tests.test_flash import qemu_pids

    out = tmp_path / "ad"
    build_project(int8_model_path("ad"), "mps2-an386", out, backend="native", quiet=True)
    profile = subprocess.Popen([sys.executable, "-m", "edgekit", "profile", str(out), "--runs", "500"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not qemu_pids(str(out)) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = qemu_pids(str(out))
        assert len(pids) == 1
        time.sleep(1.0)  # well into the runs
        os.kill(pids[0], signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = profile.communicate(timeout=30)
        assert time.monotonic() - killed < 5
        assert profile.returncode == 1 and stdout == ""
        assert stderr.startswith("error: lost the connection to socket://127.0.0.1:")
        assert "QEMU was killed by signal 9" in stderr and stderr.count("\n") == 1
        assert qemu_pids(str(out)) == []
    finally:
        profile.kill()


def test_human_report(kws, tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import cli

    result = CliRunner().invoke(cli, ["profile", str(_fake_build(tmp_path / "b", kws)), "--runs", "2"])
    assert result.exit_code == 0, result.output
    for text in ("model.tflite on host (native backend), 2 runs", "Latency", "arena used", "peak stack",
                 "max |diff| (int8 steps)", "DEPTHWISE_CONV_2D"):
        assert text in result.output


@needs_qemu
@pytest.mark.slow
def test_digits_accuracy_on_the_emulated_board(digits_cnn, tmp_path):
    """A Keras model trained here, quantized and built for mps2-an386: the device classifies held-out digits
    exactly as TFLite Micro does, and the accuracy is counted from the labels in --data."""
    out = tmp_path / "digits"
    build_project(digits_cnn["keras_path"], "mps2-an386", out, data=digits_cnn["npz_path"], quiet=True)
    report = profile_build(out, data=digits_cnn["npz_path"], runs=120)
    assert report["runs"] == 120 and report["max_abs_diff"] == 0 and report["deterministic"]
    assert report["accuracy"] == report["reference_accuracy"] > 0.9
    assert report["instructions"]["median"] > report["macs"] > 0


def test_each_input_is_uploaded_once_and_run_n_times(kws, tmp_path):
    """16 runs over 8 inputs: `infer 2 W` on each upload, the per-inference ticks recovered from ek-ticks' N."""
    tin = load_tflite(kws).input_tensors()[0]
    q = np.random.default_rng(5).integers(-128, 128, size=(8, *tin.shape[1:]), dtype=np.int8)
    np.savez(tmp_path / "q.npz", x=q)
    report = profile_build(_fake_build(tmp_path / "b", kws), data=tmp_path / "q.npz", runs=16)
    assert report["runs"] == 16 and report["max_abs_diff"] == 0 and report["deterministic"]
    ticks = [1000 + sum(x.tobytes()) % 97 for x in q]  # the simulator's time of one inference of each input
    assert report["latency_us"] == {"min": min(ticks), "median": float(np.median(ticks)), "max": max(ticks)}
    # a device whose uploaded input does not survive an inference is caught, not averaged away
    broken = _fake_build(tmp_path / "c", kws, "clobber")
    assert profile_build(broken, data=tmp_path / "q.npz", runs=16)["max_abs_diff"] > 0
    once = profile_build(broken, data=tmp_path / "q.npz", runs=8)  # `infer 1 0` each, but the repeat differs
    assert once["deterministic"] is False


# -- the protocol on a real native build (host board) ------------------------------------------------------------


@pytest.mark.parametrize("name", ["ad", "kws"])
def test_infer_with_warmups_runs_the_uploaded_input(int8_model_path, tmp_path, name):
    """`infer 3 2` (MLPerf's runner: one upload, W + N inferences) ends on the reference output of that input,
    whatever the backend did with the input's memory meanwhile; a second upload is honoured the same way."""
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    model = int8_model_path(name)
    out = tmp_path / name
    build_project(model, "host", out, quiet=True)
    tin = load_tflite(model).input_tensors()[0]
    inputs = np.random.default_rng(11).integers(-128, 128, size=(2, *tin.shape[1:]), dtype=np.int8)
    reference = run_reference(model.read_bytes(), inputs)
    with open_device(load_build(out)) as session:
        device = session.device
        for x, expected in zip(inputs, reference):
            device.load_input(x.tobytes())
            inference = device.infer(3, 2)
            assert device.output() == expected.astype(np.int8).tobytes()
            assert inference.results == [int(v) for v in expected.reshape(-1)]
            assert device.ticks()[1] == 3
        assert not np.array_equal(reference[0], reference[1])  # the two inputs are told apart
