"""Bare-metal firmware for QEMU's Cortex-M machines: it builds with arm-none-eabi-gcc, boots, speaks the protocol
on the emulated UART, and counts the same ticks on every run (QEMU with -icount shift=0).

The serial line is connected the race-free way from the QEMU notes: we listen on 127.0.0.1 port 0 and hand the
socket to QEMU, which waits for us before running the firmware, so nothing printed at boot is lost.
"""

import ctypes
import dataclasses
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.boards import load_board
from edgekit.codegen.app import compile_project, generate_app_project
from edgekit.errors import EdgekitError

STUB = Path(__file__).resolve().parent / "stub_backend.c"
EMULATED = ["mps2-an386", "mps2-an385", "mps2-an500", "mps3-an547"]
TIMEOUT = 10.0

needs_arm_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc missing")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm missing")


def stub_backend(model_dir, arena_bytes=None):
    text = STUB.read_text()
    if arena_bytes is not None:
        text = f"#define STUB_ARENA_BYTES {arena_bytes}\n" + text
    (model_dir / "stub_backend.c").write_text(text)


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed test run leaves no QEMU behind


class QemuDevice:
    """A firmware running in QEMU, its UART0 on a loopback socket."""

    def __init__(self, board, firmware):
        board = load_board(board) if isinstance(board, str) else board
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        command = ["qemu-system-arm", "-machine", board.emulator["machine"], "-nodefaults", "-display", "none",
                   "-monitor", "none", "-no-reboot", "-nic", "none", "-icount", "shift=0",
                   "-chardev", f"socket,id=ser0,fd={listener.fileno()},server=on,wait=on,nodelay=on",
                   "-serial", "chardev:ser0", "-kernel", str(firmware)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, pass_fds=(listener.fileno(),),
                                        preexec_fn=_die_with_parent)
        listener.close()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def read_until_ready(self) -> list[str]:
        lines = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            while b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                lines.append(line.decode("ascii"))
                if line == b"m-ready":
                    return lines
            assert time.monotonic() < deadline, f"no m-ready within {TIMEOUT} s; got {lines} {self.buffer!r}"
            chunk = self.sock.recv(65536)
            assert chunk, f"QEMU closed the serial line; got {lines} {self.buffer!r}"
            self.buffer += chunk

    def ask(self, command: str) -> list[str]:
        self.sock.sendall(command.encode("ascii") + b"%")
        lines = self.read_until_ready()
        assert lines[-1] == "m-ready" and "m-ready" not in lines[:-1], lines
        return lines[:-1]

    def close(self):
        self.sock.close()
        self.process.kill()
        self.process.wait()
        self.process.stderr.close()


@pytest.fixture(scope="module")
def firmwares(tmp_path_factory):
    """Board name -> CompileResult of the stub firmware, built on first use."""
    built = {}

    def build(board):
        if board not in built:
            project = generate_app_project(board, tmp_path_factory.mktemp("fw") / board, stub_backend)
            built[board] = compile_project(project.path, board)
        return built[board]

    return build


def session(board, firmware):
    dev = QemuDevice(board, firmware)
    assert dev.read_until_ready() == ["m-init-done", "m-ready"]
    return dev


def run_protocol(board, firmware, data: bytes) -> dict:
    dev = session(board, firmware)
    try:
        answers = {"name": dev.ask("name"), "info": dev.ask("ek-info"), "load": dev.ask(f"db load {len(data)}"),
                   "db": dev.ask("db " + data.hex()), "infer": dev.ask("infer 1 0"), "mem": dev.ask("ek-mem"),
                   "ticks": dev.ask("ek-ticks"), "layers": dev.ask("ek-layers"), "out": dev.ask("ek-out")}
    finally:
        dev.close()
    return answers


@needs_arm_gcc
@needs_qemu
@pytest.mark.slow
def test_mps2_an386_answers_the_protocol_with_repeatable_ticks(firmwares):
    result = firmwares("mps2-an386")
    assert result.warnings == [], result.warnings
    data = bytes([5, 6, 7, 0x80, 0x80, 0x01, 100, 27, 1, 0xff, 0xff, 0xff])
    first = run_protocol("mps2-an386", result.firmware, data)
    second = run_protocol("mps2-an386", result.firmware, data)

    assert first["name"] == ["m-name-dut-[edgekit]"]
    assert first["info"][-1] == "m-ek-info-tps-25000000"
    assert first["load"] == ["m-[Expecting 12 bytes]"] and first["db"] == ["m-load-done"]
    expected = np.frombuffer(data, np.int8).astype(np.int32).reshape(4, 3).sum(1).astype(np.uint8).astype(np.int8)
    assert first["infer"][-1] == "m-results-[" + ",".join(str(int(v)) for v in expected) + "]"
    assert first["out"] == ["m-ek-out-" + expected.tobytes().hex()]
    stack = int(first["mem"][2][len("m-ek-mem-stack-"):])
    assert 0 < stack < 16384
    ticks = int(first["ticks"][0].split("-")[3])
    assert first["ticks"][0].endswith("-1") and ticks > 0
    # Deterministic emulation: the same image and commands count the same ticks, per run and per layer.
    assert first["ticks"] == second["ticks"]
    assert first["layers"] == second["layers"]
    # (The stack peak may differ by an interrupt frame: where the UART interrupt lands depends on the host.)
    layer_ticks = [int(line.rsplit("-", 1)[1]) for line in first["layers"]]
    assert 0 < sum(layer_ticks) <= ticks


def runner_session(board: str, result):
    """A session through edgekit.flash's QEMU runner and edgekit.device's client, as `edgekit profile` opens it."""
    from edgekit.flash import Build, QemuRunner, RunnerArgs

    board = load_board(board)
    project_dir = result.firmware.parent.parent
    build = Build(project_dir, {"board": board.name, "firmware": str(result.firmware.relative_to(project_dir))},
                  board)
    return QemuRunner.create(board, build, RunnerArgs()).open_session()


@needs_arm_gcc
@needs_qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", EMULATED)
def test_every_emulated_board_builds_and_boots(firmwares, board):
    started = time.monotonic()
    result = firmwares(board)
    assert result.warnings == [], result.warnings
    sizes = result.sizes
    assert sizes["flash_bytes"] == sizes["text"] + sizes["data"] and sizes["stack_bytes"] == 16384
    assert sizes["flash_bytes"] < load_board(board).flash_bytes
    session = runner_session(board, result)
    try:
        device = session.device
        assert session.boot_lines == []  # nothing but the banner before the first answer
        info = device.info()
        assert (info.input_bytes, info.output_bytes, info.layers) == (12, 4, 2)
        assert info.ticks_per_second == load_board(board).emulator["systick_hz"]
        device.load_input(bytes(range(12)))
        assert device.infer(runs=2, warmup=1).results == [3, 12, 21, 30]
        assert device.output() == bytes([3, 12, 21, 30])
        ticks, runs = device.ticks()
        assert runs == 2 and ticks > 0
        assert device.memory()["stack"] > 0
    finally:
        session.close()
    assert time.monotonic() - started < 10


@needs_arm_gcc
def test_image_over_the_boards_ram_fails_to_link(tmp_path):
    board = dataclasses.replace(load_board("mps2-an386"), ram_bytes=64 * 1024)
    # 40 KiB of arena + 16 KiB of stack fit in 64 KiB; 60 KiB do not.
    fits = generate_app_project(board, tmp_path / "fits", lambda d: stub_backend(d, 40 * 1024))
    assert compile_project(fits.path, board).sizes["bss"] >= 40 * 1024
    project = generate_app_project(board, tmp_path / "big", lambda d: stub_backend(d, 60 * 1024))
    with pytest.raises(EdgekitError) as error:
        compile_project(project.path, board)
    assert "do not fit the 65536 bytes of RAM of board mps2-an386" in str(error.value)
    assert not (project.path / project.firmware).exists()


@needs_arm_gcc
def test_image_over_the_boards_flash_fails_to_link(tmp_path):
    board = dataclasses.replace(load_board("mps3-an547"), flash_bytes=4096)
    project = generate_app_project(board, tmp_path / "p", stub_backend)
    with pytest.raises(EdgekitError, match="do not fit the 4096 bytes of flash of board mps3-an547"):
        compile_project(project.path, board)


@needs_arm_gcc
@needs_qemu
@pytest.mark.slow
def test_native_backend_in_qemu_matches_tflite_micro(tmp_path, int8_model_path):
    """End to end on the emulated Cortex-M4: the AD model through the native backend equals TFLite Micro."""
    pytest.importorskip("edgekit.codegen.native", reason="the native backend has not landed yet")
    from edgekit.codegen.app import generate_native_project
    from edgekit.reference import run_reference
    from edgekit.tflite_model import load_tflite

    path = int8_model_path("ad")
    project = generate_native_project(load_tflite(path), "mps2-an386", tmp_path / "ad")
    result = compile_project(project.path, "mps2-an386")
    assert result.warnings == [], result.warnings[:5]
    session = runner_session("mps2-an386", result)
    try:
        device = session.device
        data = np.random.default_rng(1).integers(-128, 128, size=device.info().input_bytes, dtype=np.int8)
        device.load_input(data.tobytes())
        device.infer(runs=1, warmup=0)
        out = np.frombuffer(device.output(), dtype=np.int8)
        assert device.memory()["stack"] > 0
        assert len(device.layers()) == device.info().layers
    finally:
        session.close()
    np.testing.assert_array_equal(out, run_reference(path.read_bytes(), data[None, :])[0].reshape(-1))


@needs_arm_gcc
def test_make_builds_the_same_firmware_as_compile_project(firmwares):
    """The generated Makefile is the same build: a person running `make` gets the very same ELF."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = firmwares("mps2-an386")
    project_dir = result.firmware.parent.parent
    copy = project_dir.parent / "by-make"
    shutil.copytree(project_dir, copy, ignore=shutil.ignore_patterns("build"))
    subprocess.run(["make", "-s"], cwd=copy, check=True, capture_output=True, timeout=120)
    assert (copy / "build" / "firmware.elf").read_bytes() == result.firmware.read_bytes()


@needs_arm_gcc
@needs_qemu
@pytest.mark.slow
def test_a_fault_is_reported_and_the_emulator_exits(tmp_path):
    """A crash in the model prints e-[fault: ...] on the serial line and resets; QEMU (-no-reboot) then exits."""
    def trapping_backend(model_dir):
        text = STUB.read_text().replace("int ek_model_invoke(void) {",
                                        "int ek_model_invoke(void) {\n  if (input[0] == 0x7f) __builtin_trap();")
        (model_dir / "stub_backend.c").write_text(text)

    project = generate_app_project("mps2-an386", tmp_path / "trap", trapping_backend)
    result = compile_project(project.path, "mps2-an386")
    dev = session("mps2-an386", result.firmware)
    try:
        assert dev.ask("db load 12") == ["m-[Expecting 12 bytes]"]
        assert dev.ask("db 7f" + "00" * 11) == ["m-load-done"]
        dev.sock.sendall(b"infer 1 0%")
        received = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            chunk = dev.sock.recv(4096)
            if not chunk:
                break
            received += chunk
        assert b"e-[fault: HardFault]\r\n" in received
        assert dev.process.wait(timeout=TIMEOUT) == 0
    finally:
        dev.close()
