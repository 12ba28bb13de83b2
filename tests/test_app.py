"""The device application on the host platform: every protocol command over pipes, and project generation.

The backend is tests/stub_backend.c (12 int8 in, 4 int8 out: output[j] = sum of input[3j..3j+2], wrapping), so
the application is tested without depending on a model; the end-to-end test with the native backend and an
MLPerf Tiny model checks the outputs against TFLite Micro.
"""

import dataclasses
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit import __version__
from edgekit.boards import load_board
from edgekit.codegen.app import compile_project, generate_app_project
from edgekit.errors import EdgekitError

STUB = Path(__file__).resolve().parent / "stub_backend.c"
TIMEOUT = 10.0


def stub_backend(model_dir):
    shutil.copyfile(STUB, model_dir / "stub_backend.c")


def stub_expected(data: bytes) -> list[int]:
    values = np.frombuffer(data, dtype=np.int8).astype(np.int32)
    sums = values.reshape(4, 3).sum(axis=1)
    return [int(v) for v in sums.astype(np.uint8).astype(np.int8)]


class HostDevice:
    """The compiled host program, spoken to over its pipes: write a command, read lines up to m-ready."""

    def __init__(self, program):
        self.process = subprocess.Popen([str(program)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
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
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no m-ready within {TIMEOUT} s; got {lines} {self.buffer!r}"
            ready, _, _ = select.select([self.process.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                assert chunk, f"the program closed its output; got {lines} {self.buffer!r}"
                self.buffer += chunk

    def ask(self, command: str) -> list[str]:
        """Send one command; return its answer lines without the final m-ready."""
        self.process.stdin.write(command.encode("ascii") + b"%")
        self.process.stdin.flush()
        lines = self.read_until_ready()
        assert lines[-1] == "m-ready" and "m-ready" not in lines[:-1], lines
        return lines[:-1]

    def close(self) -> int:
        self.process.stdin.close()
        code = self.process.wait(timeout=TIMEOUT)
        self.process.stdout.close()
        return code


@pytest.fixture(scope="module")
def host_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app") / "host"
    project = generate_app_project("host", folder, stub_backend)
    result = compile_project(project.path, "host")
    return project, result


@pytest.fixture
def device(host_build):
    dev = HostDevice(host_build[1].firmware)
    assert dev.read_until_ready() == ["m-init-done", "m-ready"]
    yield dev
    if dev.process.poll() is None:
        dev.process.kill()
        dev.process.wait()


def load(dev, data: bytes, chunk: int = 5):
    assert dev.ask(f"db load {len(data)}") == [f"m-[Expecting {len(data)} bytes]"]
    answers = [dev.ask("db " + data[i:i + chunk].hex()) for i in range(0, len(data), chunk)]
    assert all(a == [] for a in answers[:-1]) and answers[-1] == ["m-load-done"]


def test_compiles_without_warnings(host_build):
    project, result = host_build
    assert result.warnings == [], result.warnings
    assert result.firmware.is_file() and os.access(result.firmware, os.X_OK)
    assert result.sizes["text"] > 0 and result.sizes["flash_bytes"] == result.sizes["text"] + result.sizes["data"]
    assert "-Wall" in result.command and "-Wextra" in result.command and "-DEK_PROFILE_LAYERS" in result.command
    assert result.log.is_file()


def test_identification_commands(device):
    assert device.ask("name") == ["m-name-dut-[edgekit]"]
    assert device.ask("profile") == [f"m-profile-[edgekit {__version__}]", "m-model-[stub]"]
    assert device.ask("ek-info") == ["m-ek-info-backend-native", "m-ek-info-input-12-i8", "m-ek-info-output-4-i8",
                                     "m-ek-info-layers-2", "m-ek-info-tps-1000000000"]
    assert device.ask("ek-mem") == ["m-ek-mem-arena-256", "m-ek-mem-arena-used-20", "m-ek-mem-stack-0"]
    assert device.close() == 0


def test_load_infer_and_results(device):
    data = bytes([1, 2, 3, 100, 100, 100, 0x80, 0xff, 0x7f, 250, 251, 252])
    expected = stub_expected(data)
    assert device.ask("results") == ["e-[no inference yet]"]
    assert device.ask("ek-ticks") == ["m-ek-ticks-0-0"]
    load(device, data)
    lines = device.ask("infer 5 2")
    assert lines[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-5"]
    assert lines[3].startswith("m-lap-us-") and lines[4].startswith("m-lap-us-")
    t0, t1 = int(lines[3][len("m-lap-us-"):]), int(lines[4][len("m-lap-us-"):])
    assert (t1 - t0) % 2**32 < 10_000_000  # microseconds; the stub takes far less than 10 s
    assert lines[5:] == ["m-infer-done", "m-results-[" + ",".join(map(str, expected)) + "]"]
    assert device.ask("results") == lines[6:]
    assert device.ask("ek-out") == ["m-ek-out-" + np.array(expected, dtype=np.int8).tobytes().hex()]
    ticks = device.ask("ek-ticks")
    assert len(ticks) == 1 and ticks[0].startswith("m-ek-ticks-") and ticks[0].endswith("-5")
    assert int(ticks[0].split("-")[3]) > 0
    layers = device.ask("ek-layers")
    assert [line.rsplit("-", 1)[0] for line in layers] == ["m-ek-layer-0-SUM", "m-ek-layer-1-COPY"]
    assert int(layers[0].rsplit("-", 1)[1]) > 0

    # A second input replaces the first; the default is one inference, no warmup.
    data2 = bytes(range(12))
    load(device, data2, chunk=12)
    assert device.ask("infer")[-1] == "m-results-[" + ",".join(map(str, stub_expected(data2))) + "]"
    assert device.ask("ek-ticks")[0].endswith("-1")


def test_bad_commands_answer_errors_and_keep_serving(device):
    assert device.ask("db 0102") == ["e-[db: send 'db load N' first]"]
    assert device.ask("db load 5") == ["e-[db load: the input is 12 bytes, not 5]"]
    assert device.ask("db load twelve") == ["e-[db load needs a byte count]"]
    assert device.ask("db") == ["e-[db needs 'load N' or hex bytes]"]
    assert device.ask("db load 12") == ["m-[Expecting 12 bytes]"]
    assert device.ask("db 010") == ["e-[db: odd number of hex digits]"]
    assert device.ask("db 01zz") == ["e-[db: not hex digits]"]
    assert device.ask("db " + "00" * 13) == ["e-[db: more than the 12 bytes announced]"]
    assert device.ask("infer 0") == ["e-[infer needs N (>= 1) inferences and W warmups: infer N W]"]
    assert device.ask("infer 1 x")[0].startswith("e-[infer needs")
    assert device.ask("infer 99999999999")[0].startswith("e-[infer needs")
    long_unknown = "frobnicate " + "x" * 40 + "\x01"
    assert device.ask(long_unknown) == ["e-[unknown command: " + long_unknown[:32] + "]"]
    assert device.ask("bell\x07") == ["e-[unknown command: bell?]"]
    assert device.ask("") == []
    assert device.ask("\r\nname\r\n") == ["m-name-dut-[edgekit]"]
    assert device.ask("  name  ") == ["m-name-dut-[edgekit]"]


def test_command_length_limit(device):
    assert device.ask("db load 12") == ["m-[Expecting 12 bytes]"]
    # 2048 characters is the limit: "db " + 1022 bytes of hex is 2047, accepted (and too many bytes, so an error
    # about the count, not the length); one character more than 2048 is discarded whole.
    assert device.ask("db " + "00" * 1022) == ["e-[db: more than the 12 bytes announced]"]
    assert device.ask("x" * 2048) == ["e-[unknown command: " + "x" * 32 + "]"]
    assert device.ask("x" * 2049) == ["e-[command too long]"]
    assert device.ask("db " + "ab" * 5000) == ["e-[command too long]"]
    assert device.ask("name") == ["m-name-dut-[edgekit]"]


def test_commands_in_one_write_are_all_answered(host_build):
    """A host may send several commands at once; each gets its answer and its own m-ready, in order."""
    process = subprocess.run([str(host_build[1].firmware)], input=b"name%ek-ticks%bogus%", capture_output=True,
                             timeout=TIMEOUT)
    assert process.returncode == 0
    assert process.stdout.decode().split("\r\n") == [
        "m-init-done", "m-ready", "m-name-dut-[edgekit]", "m-ready", "m-ek-ticks-0-0", "m-ready",
        "e-[unknown command: bogus]", "m-ready", ""]


FLOAT_BACKEND = r"""
#include <string.h>
#include "edgekit_backend.h"
static float in[3];
static float out[6];
static const ek_model_info_t info = {"f32 \"odd\" name", "native", EK_TYPE_FLOAT32, EK_TYPE_FLOAT32, 12, 24, 3,
                                     6, 0.0f, 0, 0.0f, 0, 0, 0};
const ek_model_info_t *ek_model_info(void) { return &info; }
int ek_model_init(void) { return 0; }
void *ek_model_input(void) { return in; }
const void *ek_model_output(void) { return out; }
int ek_model_invoke(void) {
  out[0] = in[0]; out[1] = -in[1]; out[2] = in[2] * 1000.0f;
  out[3] = 1.5e-7f; out[4] = 0.0f; out[5] = 12345678.0f;
  return 0;
}
uint32_t ek_model_arena_used(void) { return 0; }
const char *ek_model_layer_name(uint16_t layer) { (void)layer; return "NONE"; }
uint64_t ek_model_layer_ticks(uint16_t layer) { (void)layer; return 0; }
"""

FAILING_BACKEND = FLOAT_BACKEND.replace("int ek_model_init(void) { return 0; }",
                                        "int ek_model_init(void) { return -7; }")


def build_with(tmp_path, source: str):
    project = generate_app_project("host", tmp_path / "p", lambda d: (d / "model.c").write_text(source))
    result = compile_project(project.path, "host")
    assert result.warnings == []
    return result.firmware


def test_float_outputs_are_printed_as_decimals(tmp_path):
    dev = HostDevice(build_with(tmp_path, FLOAT_BACKEND))
    dev.read_until_ready()
    assert dev.ask("profile")[1] == "m-model-[f32 \"odd\" name]"
    assert dev.ask("ek-info")[1:3] == ["m-ek-info-input-12-f32", "m-ek-info-output-24-f32"]
    load(dev, np.array([0.25, 3.0, -0.5], dtype="<f4").tobytes(), chunk=12)
    results = dev.ask("infer 1 0")[-1]
    values = [float(v) for v in results[len("m-results-["):-1].split(",")]
    assert values == pytest.approx([0.25, -3.0, -500.0, 1.5e-7, 0.0, 12345678.0], rel=1e-6)
    assert dev.close() == 0


def test_init_failure_is_reported_and_infer_refused(tmp_path):
    dev = HostDevice(build_with(tmp_path, FAILING_BACKEND))
    assert dev.read_until_ready() == ["m-init-done", "e-[init failed: -7]", "m-ready"]
    assert dev.ask("infer 1 0") == ["e-[model not initialized]"]
    assert dev.ask("db load 12") == ["e-[model not initialized]"]
    assert dev.ask("name") == ["m-name-dut-[edgekit]"]
    assert dev.close() == 0


def test_generation_is_stable_and_complete(tmp_path):
    first = generate_app_project("mps2-an386", tmp_path / "a", stub_backend)
    second = generate_app_project("mps2-an386", tmp_path / "b", stub_backend)
    assert first.files == second.files
    assert {"Makefile", "app/edgekit_app.c", "platform/startup.c", "platform/link.ld",
            "model/stub_backend.c"} <= set(first.files)
    for name in first.files:
        assert (first.path / name).read_bytes() == (second.path / name).read_bytes(), name
    # Regenerating over an existing folder replaces it whole.
    (first.path / "stale.c").write_text("int stale;")
    generate_app_project("mps2-an386", first.path, stub_backend)
    assert not (first.path / "stale.c").exists()


def test_make_builds_the_host_project(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    project = generate_app_project("host", tmp_path / "p", stub_backend)
    subprocess.run(["make", "-s"], cwd=project.path, check=True, capture_output=True, timeout=120)
    out = subprocess.run([str(project.path / project.firmware)], input=b"profile%", capture_output=True,
                         timeout=TIMEOUT).stdout.decode()
    assert f"m-profile-[edgekit {__version__}]" in out


def test_board_text_cannot_inject_into_generated_files(tmp_path):
    board = dataclasses.replace(load_board("mps2-an386"), name='evil"\n#error injected */',
                                description="*/ #error injected /*")
    project = generate_app_project(board, tmp_path / "p", stub_backend)
    text = "\n".join((project.path / f).read_text() for f in project.files)
    assert not any(line.lstrip().startswith("#error") for line in text.splitlines())
    result = compile_project(project.path, board)
    assert result.warnings == []


def test_errors_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(EdgekitError, match="esp-idf.*supports host and qemu"):
        generate_app_project("esp32", tmp_path / "esp", stub_backend)
    assert not (tmp_path / "esp").exists()
    with pytest.raises(EdgekitError, match="wrote no C source"):
        generate_app_project("host", tmp_path / "empty", lambda d: None)
    assert not (tmp_path / "empty").exists()

    broken = generate_app_project("host", tmp_path / "broken", lambda d: (d / "m.c").write_text("int x = ;\n"))
    with pytest.raises(EdgekitError) as error:
        compile_project(broken.path, "host")
    message = str(error.value)
    assert "\n" not in message and "error" in message and "compile.log" in message
    assert "m.c" in (broken.path / "build" / "compile.log").read_text()
    assert not (broken.path / broken.firmware).exists()

    project = generate_app_project("mps2-an386", tmp_path / "arm", stub_backend)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(EdgekitError) as error:
        compile_project(project.path, "mps2-an386")
    assert str(error.value) == ("arm-none-eabi-gcc not found; install it with: apt-get install gcc-arm-none-eabi "
                                "libnewlib-arm-none-eabi")


@pytest.mark.slow
def test_native_backend_matches_tflite_micro_on_host(tmp_path, int8_model_path):
    """End to end: the AD model through the native backend, on the host board, equals TFLite Micro's output."""
    pytest.importorskip("edgekit.codegen.native", reason="the native backend has not landed yet")
    from edgekit.codegen.app import generate_native_project
    from edgekit.reference import run_reference
    from edgekit.tflite_model import load_tflite

    path = int8_model_path("ad")
    graph = load_tflite(path)
    project = generate_native_project(graph, "host", tmp_path / "ad")
    result = compile_project(project.path, "host")
    assert result.warnings == [], result.warnings[:5]
    dev = HostDevice(result.firmware)
    dev.read_until_ready()
    info = dev.ask("ek-info")
    input_bytes = int(info[1].split("-")[4])
    rng = np.random.default_rng(0)
    data = rng.integers(-128, 128, size=input_bytes, dtype=np.int8)
    load(dev, data.tobytes(), chunk=512)
    dev.ask("infer 1 0")
    device_out = np.frombuffer(bytes.fromhex(dev.ask("ek-out")[0][len("m-ek-out-"):]), dtype=np.int8)
    expected = run_reference(path.read_bytes(), data[None, :])[0]
    np.testing.assert_array_equal(device_out, expected.reshape(-1))
    layers = dev.ask("ek-layers")
    assert len(layers) == int(info[3].split("-")[-1]) and all(int(line.rsplit("-", 1)[1]) >= 0 for line in layers)
    assert dev.close() == 0
