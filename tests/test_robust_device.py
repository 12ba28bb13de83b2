"""Device replies that lie, flood or stall: `edgekit profile` refuses each in one line naming the field, promptly.

The device is tests/test_device.py's protocol simulator behind a loopback socket (what QEMU and a serial port
look like), serving a real MLPerf Tiny model (outputs from TFLite Micro's interpreter), with some answers
rewritten by a script. The build folder names a real board (nucleo-l4r5zi: 640 KB of RAM at 120 MHz), reached
through --port.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from edgekit.device import Device, DeviceError, SerialTransport, Transport
from edgekit.errors import EdgekitError
from edgekit.profile import inference_budget, profile_build
from edgekit.boards import load_board
from edgekit.tflite_model import load_tflite
from tests.test_device import Simulator, SocketDevice

BOARD = "nucleo-l4r5zi"


class Scripted(Simulator):
    """The simulator with some answers rewritten: `script` maps a command's first word to a function of its usual
    answer lines (m-ready excluded) that returns the lines to send instead, raw bytes to send as they are, or None
    to fall silent from then on."""

    def __init__(self, model_bytes=None, script=None, **kw):
        super().__init__(model_bytes, **kw)
        self.script = script or {}

    def answer(self, command: str) -> bytes:
        text = super().answer(command)
        rewrite = self.script.get(command.split()[0] if command.split() else "")
        if rewrite is None:
            return text
        lines = rewrite(text.decode("latin-1").split("\r\n")[:-2])
        if isinstance(lines, bytes):  # sent as they are (e.g. without m-ready)
            return lines
        if lines is None:
            self.silent = True
            return b""
        return "".join(line + "\r\n" for line in lines + ["m-ready"]).encode("latin-1")


@pytest.fixture(scope="module")
def kws(int8_model_path):
    return int8_model_path("kws")


@pytest.fixture(scope="module")
def kws_layers(kws):
    return len(load_tflite(kws).operators)


def _build(tmp_path, model, macs=None):
    """A build folder for BOARD (no firmware: the device is reached through --port), of the model the simulator
    names 'simulated'."""
    folder = tmp_path / "build"
    folder.mkdir()
    shutil.copyfile(model, folder / "model.tflite")
    manifest = {"board": BOARD, "backend": "native", "model": "model.tflite", "model_name": "simulated",
                "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    if macs is not None:
        manifest["macs"] = macs
    (folder / "edgekit-build.json").write_text(json.dumps(manifest))
    return folder


def _profile(tmp_path, model, script, runs=2, timeout=None, macs=None):
    """profile_build against the scripted device: (the error it raised or None, seconds it took)."""
    fake = SocketDevice(Scripted(model.read_bytes(), script))
    build = _build(tmp_path, model, macs)
    started = time.monotonic()
    try:
        profile_build(build, runs=runs, port=fake.url, timeout=timeout)
        error = None
    except EdgekitError as raised:
        error = raised
    finally:
        fake.close()
    return error, time.monotonic() - started


def _replace(prefix: str, new: str):
    """A script step: the line starting with `prefix` becomes `new`."""
    return lambda lines: [new if line.startswith(prefix) else line for line in lines]


HUGE = "1" + "0" * 60  # 1e60: latency, arena or index far beyond any 64-bit counter


@pytest.mark.parametrize("script, message", [
    # the output tensor
    ({"ek-out": lambda lines: ["m-ek-out-0102ff"]}, "ek-out has 3 bytes; expected 12"),
    ({"ek-out": lambda lines: ["m-ek-out-zz"]}, "ek-out line that is not hex"),
    ({"infer": lambda lines: [line for line in lines if not line.startswith("m-results")] + ["m-results-[1,2]"]},
     "m-results lists 2 values; expected 12"),
    ({"ek-info": _replace("m-ek-info-output-", "m-ek-info-output-13-i8")}, "ek-info input 490 bytes, output 13"),
    ({"ek-info": _replace("m-ek-info-output-", "m-ek-info-output-12-q7")}, "ek-info output type is 'q7'"),
    # absurd or malformed figures
    ({"ek-mem": _replace("m-ek-mem-arena-", f"m-ek-mem-arena-{HUGE}")}, "ek-mem arena bytes is too large"),
    ({"ek-mem": lambda lines: ["m-ek-mem-arena-1000000000000"] + lines[1:]},
     "ek-mem arena 1,000,000,000,000 bytes, more than the 655,360 bytes of nucleo-l4r5zi's RAM"),
    ({"ek-mem": _replace("m-ek-mem-stack-", "m-ek-mem-stack-1000000")},
     "ek-mem stack 1,000,000 bytes, more than the 655,360 bytes of nucleo-l4r5zi's RAM"),
    ({"ek-mem": _replace("m-ek-mem-arena-used-", "m-ek-mem-arena-used-5000")},
     "ek-mem arena-used is 5000 bytes, more than the 4096 bytes of the arena"),
    ({"ek-mem": _replace("m-ek-mem-stack-", "m-ek-mem-stack--512")}, "ek-mem stack bytes is negative: '-512'"),
    ({"ek-mem": lambda lines: lines + ["m-ek-mem-stack-600"]}, "ek-mem stack twice"),
    ({"ek-ticks": lambda lines: [f"m-ek-ticks-{HUGE}-1"]}, "ek-ticks ticks is too large"),
    ({"ek-ticks": lambda lines: [f"m-ek-ticks-{2 ** 64}-1"]}, "ek-ticks ticks is too large"),
    ({"ek-ticks": lambda lines: ["m-ek-ticks-1000000000000000-1"]},
     "for 1 inference that took"),  # 1e9 s at 1 MHz, in a fraction of a second of host time
    ({"ek-ticks": lambda lines: ["m-ek-ticks-1000-7"]}, "ek-ticks for 7 runs after 'infer 1'; expected 1"),
    ({"ek-ticks": lambda lines: ["m-ek-ticks-12ab-1"]}, "ek-ticks ticks is not a whole number: '12ab'"),
    ({"infer": _replace("m-lap-us-100", f"m-lap-us-{2 ** 32}")}, "m-lap-us is too large"),
    ({"ek-info": _replace("m-ek-info-tps-", "m-ek-info-tps-fast")}, "ek-info tps is not a whole number: 'fast'"),
    ({"ek-info": _replace("m-ek-info-layers-", "m-ek-info-layers-99")},
     "ek-info layers 99, more than the 13 operators of the build's model"),
    ({"ek-info": lambda lines: ["m-ek-info-backend-tflm"] + lines[1:-2] + ["m-ek-info-layers-12", lines[-1]]},
     "ek-info layers 12; TFLite Micro runs each of the build's 13 operators"),
    # per-layer lines
    ({"ek-layers": lambda lines: lines + ["m-ek-layer-13-CONV_2D-1", "m-ek-layer-14-CONV_2D-1"]},
     "ek-layer index 13 is out of range: ek-info announced 13 layers (0..12)"),
    ({"ek-layers": lambda lines: [f"m-ek-layer-{10 ** 12}-CONV_2D-1"] + lines[1:]}, "ek-layer index is too large"),
    ({"ek-layers": lambda lines: lines[:1] + lines[:-1]}, "ek-layer index 0 appears twice"),
    ({"ek-layers": lambda lines: lines[:5]}, "ek-layers listed 5 layers; expected the 13 layers"),
    ({"ek-layers": lambda lines: ["m-ek-layer-0-CONV_2D-many"] + lines[1:]},
     "ek-layer ticks is not a whole number: 'many'"),
    ({"ek-layers": lambda lines: ["m-ek-layer-0-CONV_2D--5"] + lines[1:]}, "ek-layer ticks or name is not readable"),
    ({"ek-layers": lambda lines: [f"m-ek-layer-{i}-CONV_2D-1000000" for i in range(13)]},
     "ek-layers ticks summing to 13,000,000, more than the"),
    # identity
    ({"profile": _replace("m-model-", "m-model-[vww_96_int8]")}, "the device runs model 'vww_96_int8'"),
])
def test_a_bad_reply_is_one_line_naming_the_field(kws, tmp_path, script, message):
    error, elapsed = _profile(tmp_path, kws, script)
    assert error is not None and message in str(error), error
    assert "\n" not in str(error) and len(str(error)) < 400
    assert elapsed < 5  # refused at once: no timeout was involved


def test_a_good_device_still_profiles(kws, tmp_path, kws_layers):
    """The checks pass a device that follows the protocol: the same figures as without them."""
    fake = SocketDevice(Scripted(kws.read_bytes()))
    try:
        report = profile_build(_build(tmp_path, kws), runs=3, port=fake.url)
    finally:
        fake.close()
    assert report["max_abs_diff"] == 0 and report["deterministic"] and len(report["layers"]) == kws_layers
    assert report["arena_bytes"] == 3000 and report["stack_bytes"] == 512


# -- bounded time --------------------------------------------------------------------------------------------


def test_the_inference_budget_comes_from_the_macs_and_the_clock():
    """MACs x 50 cycles on the board's clock; QEMU's ~500 M instructions/s for emulated boards."""
    seconds, basis = inference_budget(load_board("nucleo-l4r5zi"), 12_000_000)
    assert seconds == pytest.approx(12e6 * 50 / 120e6) and "12,000,000 MACs x 50 cycles at 120 MHz" in basis
    emulated, basis = inference_budget(load_board("mps2-an386"), 12_000_000)
    assert emulated == pytest.approx(12e6 * 50 / 500e6) and "emulated" in basis
    slow, _ = inference_budget(load_board("arduino-nano33ble"), 12_000_000)  # 64 MHz
    assert slow > seconds


def test_a_device_silent_in_its_first_inference_costs_the_floor_not_120_s_per_run(kws, tmp_path):
    """10 runs of one input: 'infer 10 1' used to get 120 s x 11. Now the warm-up phase gets max(5 s floor, the
    estimate from the MACs and the clock), and the profile ends there in one line stating the time allowed."""
    tin = load_tflite(kws).input_tensors()[0]
    one = np.random.default_rng(0).integers(-128, 128, size=(1, *tin.shape[1:]), dtype=np.int8)
    np.savez(tmp_path / "one.npz", x=one)  # int8: taken as already quantized
    fake = SocketDevice(Scripted(kws.read_bytes(), {"infer": lambda lines: None}))
    started = time.monotonic()
    try:
        with pytest.raises(DeviceError) as raised:
            profile_build(_build(tmp_path, kws), runs=10, data=tmp_path / "one.npz", port=fake.url)
    finally:
        fake.close()
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert "to 'infer 10 1' within 5 s for 1 warm-up inference (1.11 s each: 2,656,768 MACs x 50 cycles at 120 " \
           "MHz, nucleo-l4r5zi, at least 5 s)" in message, message
    assert 4.5 < elapsed < 9


def test_a_device_silent_later_aborts_the_whole_profile_at_once(kws, tmp_path):
    """Silent at the second input: the first timeout ends the profile (no retry per run); its budget comes from
    the first inference's measured time (here under the --timeout floor of 0.5 s)."""
    infers = []

    def second_goes_silent(lines):
        infers.append(1)
        return lines if len(infers) == 1 else None

    error, elapsed = _profile(tmp_path, kws, {"infer": second_goes_silent}, runs=8, timeout=0.5)
    assert isinstance(error, DeviceError) and "'infer 1 0' within 0.5 s" in str(error), error
    assert "10x the first inference" in str(error)
    assert elapsed < 3 and len(infers) == 2


def test_a_device_silent_in_its_timed_runs_gets_the_timed_budget():
    """The deadline restarts at m-infer-start-N for the N timed runs: N x the per-inference budget."""
    warmed_up = lambda lines: "".join(line + "\r\n" for line in lines[:3]).encode()  # noqa: E731 (no m-ready)
    fake = SocketDevice(Scripted(script={"infer": warmed_up}))
    device = Device(SerialTransport(fake.url))
    try:
        device.sync()
        device.load_input(bytes(40))
        started = time.monotonic()
        with pytest.raises(DeviceError, match=r"'infer 3 1' within 0.6 s for 3 timed inferences \(0.2 s each\)"):
            device.infer(3, 1, per_inference=0.2, floor=0.1)
        assert 0.55 < time.monotonic() - started < 1.5
    finally:
        device.close()
        fake.close()


# -- linear parsing and caps -----------------------------------------------------------------------------------


def _layers_device(count: int, announced: int | None = None):
    sim = Scripted()
    sim.layers = [("CONV_2D", 1)] * count
    if announced is not None:
        sim.script["ek-info"] = _replace("m-ek-info-layers-", f"m-ek-info-layers-{announced}")
    fake = SocketDevice(sim)
    device = Device(SerialTransport(fake.url))
    device.sync()
    device.info()
    return fake, device


def test_a_flood_of_layer_lines_is_refused_at_once(tmp_path):
    """20,000 layer lines when ek-info announced 2: refused after the cap (2 + slack), in milliseconds."""
    fake, device = _layers_device(20_000, announced=2)
    try:
        started = time.monotonic()
        with pytest.raises(DeviceError, match="more than 18 lines in answer to 'ek-layers'"):
            device.layers()
        assert time.monotonic() - started < 1
    finally:
        device.close()
        fake.close()


def _time_layers(count: int) -> float:
    """CPU seconds (this process: client and simulator thread) to read `count` layer lines and take the median
    of each over 10 runs."""
    from edgekit.profile import _layers

    fake, device = _layers_device(count)
    try:
        started = time.process_time()
        layers = device.layers()
        rows = _layers([{"layers": layers}] * 10, 1_000_000, False)
        elapsed = time.process_time() - started
        assert len(layers) == len(rows) == count
        return elapsed
    finally:
        device.close()
        fake.close()


def test_reading_many_layer_lines_is_linear():
    """A model of 20,000 layers (as announced): read and summarised over 10 runs in about a second of work at
    most, and about 10 times as long as 2,000 (it was quadratic: 20,000 lines took 42 s)."""
    small = min(_time_layers(2_000) for _ in range(2))
    large = _time_layers(20_000)
    assert large < 2.0, large
    assert large < 30 * small + 0.1, (small, large)


class ChunkedTransport(Transport):
    """Bytes handed out a few at a time, as a slow UART delivers them."""

    description = "chunked line"

    def __init__(self, data: bytes, chunk: int):
        self.data, self.chunk, self.position = data, chunk, 0
        self.written = b""

    def read(self, timeout: float) -> bytes:
        piece = self.data[self.position:self.position + self.chunk]
        self.position += len(piece)
        return piece

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        pass


def test_a_long_line_in_small_pieces_is_read_in_linear_time():
    """ek-out of a 1 MB output (2 MB of hex) arriving 256 bytes at a time: each byte is searched once."""
    payload = bytes(range(256)) * 4096
    device = Device(ChunkedTransport(b"m-ek-out-" + payload.hex().encode() + b"\r\nm-ready\r\n", 256))
    started = time.perf_counter()
    assert device.output() == payload
    assert time.perf_counter() - started < 1.0


def test_garbage_without_end_is_capped_in_bytes():
    """Lines that are not protocol lines, never an m-ready: a short command's answer stops at 64 KB."""
    device = Device(ChunkedTransport(b"noise noise noise\r\n" * 100_000, 4096), timeout=30)
    started = time.monotonic()
    with pytest.raises(DeviceError, match="sent more than 65,536 bytes in answer to 'ek-mem'"):
        device.memory()
    assert time.monotonic() - started < 1


def test_the_cli_refuses_a_bad_reply_in_one_line(kws, tmp_path):
    """`edgekit profile --port`: exit 1, one line on stderr, nothing on stdout, no traceback."""
    fake = SocketDevice(Scripted(kws.read_bytes(), {"ek-out": lambda lines: ["m-ek-out-00"]}))
    try:
        done = subprocess.run([sys.executable, "-m", "edgekit", "profile", str(_build(tmp_path, kws)), "--port",
                               fake.url, "--runs", "1"], capture_output=True, text=True, timeout=120)
    finally:
        fake.close()
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "error: ek-out has 1 bytes; expected 12, the output bytes ek-info announced\n"
