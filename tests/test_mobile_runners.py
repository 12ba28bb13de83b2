"""The adb and ssh runners: exact dry-run commands, one-line errors without a device, and the parser of LiteRT's
benchmark_model output in the format its README documents and its BenchmarkLoggingListener prints."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from edgekit.errors import EdgekitError
from edgekit.runners.benchmark_model import benchmark_arguments, parse_benchmark_output

# The end of a run as tflite/tools/benchmark/README.md shows it (older builds).
README_OUTPUT = """\
Number of nodes executed: 31
Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
Memory (bytes): count=0
31 nodes observed


Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9
"""

# What benchmark_model.cc prints today (warm-up stats, then the timed runs' stats, then the listener's lines).
CURRENT_OUTPUT = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/edgekit/digits_cnn_fp16.tflite]
INFO: The input model file size (MB): 0.067024
INFO: Initialized session in 6.395ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=412 first=2761 curr=1190 min=1102 max=2761 avg=1213.58 std=96

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=801 first=1188 curr=1201 min=1097 max=1.5012e+04 avg=1242.27 std=512

INFO: Inference timings in us: Init: 6395, First inference: 2761, Warmup (avg): 1213.58, Inference (avg): 1242.27
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.45312 overall=4.10156
INFO: Overall peak memory footprint (MB) via periodic monitoring: 6.26172
"""


def test_parser_reads_the_current_output():
    report = parse_benchmark_output(CURRENT_OUTPUT)
    assert report["runs"] == 801  # the timed runs, not the warm-up's
    assert report["latency_us"] == {"min": 1097.0, "avg": 1242.27, "max": 15012.0, "std": 512.0}
    assert (report["init_us"], report["first_inference_us"], report["warmup_avg_us"]) == (6395.0, 2761.0, 1213.58)
    assert report["inference_avg_us"] == 1242.27
    assert report["memory_mb"] == {"init": 3.45312, "overall": 4.10156, "peak": 6.26172}
    assert report["model_size_mb"] == 0.067024


def test_parser_reads_the_readme_example_and_logcat_prefixes():
    report = parse_benchmark_output(README_OUTPUT)
    assert report["runs"] == 50 and report["latency_us"]["avg"] == 79732.0 and report["latency_us"]["min"] == 77385
    assert (report["init_us"], report["warmup_avg_us"], report["inference_avg_us"]) == (38467.0, 83235.0, 79760.9)
    assert report["memory_mb"] == {"init": None, "overall": None, "peak": None}
    logcat = "\n".join(f"07-08 15:34:26.202 I/tflite  ( 5395): {line}" for line in CURRENT_OUTPUT.splitlines())
    assert parse_benchmark_output(logcat)["latency_us"]["avg"] == 1242.27


def test_parser_names_the_failure():
    text = "INFO: STARTING!\nERROR: Didn't find op for builtin opcode 'FOO' version '1'\n"
    with pytest.raises(EdgekitError, match="benchmark_model did not report its timings: ERROR: Didn't find op"):
        parse_benchmark_output(text)
    with pytest.raises(EdgekitError, match="no 'Inference timings in us' line"):
        parse_benchmark_output(CURRENT_OUTPUT.split("INFO: Inference timings")[0].replace("count=", "n="))


def test_benchmark_flags_follow_the_variant_and_the_board():
    from edgekit.boards import load_board

    android = load_board("android-arm64")
    args, accelerator = benchmark_arguments(android, "/d/m.tflite", "fp16", threads=2, runs=20)
    assert accelerator == "gpu" and args == ["--graph=/d/m.tflite", "--num_threads=2", "--num_runs=20",
                                             "--warmup_runs=5", "--report_peak_memory_footprint=true",
                                             "--use_gpu=true"]
    assert benchmark_arguments(android, "m", "dynamic")[0][-1] == "--use_xnnpack=true"  # GPU does not take it
    assert benchmark_arguments(load_board("linux-aarch64"), "m", "int8")[1] == "xnnpack"


@pytest.fixture(scope="module")
def kws_builds(int8_model_path, tmp_path_factory):
    """The MLPerf KWS int8 model built for the phone (generated only) and the Linux board (compiled)."""
    from edgekit.build import build

    folder = tmp_path_factory.mktemp("runners")
    android = build(int8_model_path("kws"), "android-arm64", folder / "android", quiet=True)
    compile_linux = shutil.which("aarch64-linux-gnu-gcc") is not None
    linux = build(int8_model_path("kws"), "linux-aarch64", folder / "linux", compile=compile_linux, quiet=True)
    return folder / "android", folder / "linux", android, linux


def test_adb_dry_run_prints_the_exact_commands(kws_builds, tmp_path):
    from edgekit.flash import flash_build

    android, _, result, _ = kws_builds
    assert result["manifest"]["mobile"]["chosen"] == "int8"  # an int8 model given: the only variant
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    report = flash_build(android, dry_run=True, port="R58M123", extra={"benchmark_model": str(binary)})
    model = android / "kws_ref_model.tflite"
    assert report["runner"] == "adb" and report["commands"] == [
        "adb -s R58M123 shell mkdir -p /data/local/tmp/edgekit",
        f"adb -s R58M123 push {model} /data/local/tmp/edgekit/kws_ref_model.tflite",
        f"adb -s R58M123 push {binary} /data/local/tmp/edgekit/benchmark_model",
        "adb -s R58M123 shell chmod 755 /data/local/tmp/edgekit/benchmark_model",
        "adb -s R58M123 shell /data/local/tmp/edgekit/benchmark_model "
        "--graph=/data/local/tmp/edgekit/kws_ref_model.tflite --num_threads=1 --num_runs=50 --warmup_runs=5 "
        "--report_peak_memory_footprint=true --use_xnnpack=true"]  # int8: the phone's GPU does not take it
    on_device = flash_build(android, dry_run=True, extra={"benchmark_model": "/data/local/tmp/bm"})
    assert len(on_device["commands"]) == 3 and on_device["commands"][-1].startswith("adb shell /data/local/tmp/bm ")


def test_ssh_dry_run_prints_the_exact_commands(kws_builds):
    from edgekit.flash import flash_build

    _, linux, _, result = kws_builds
    assert list(result["manifest"]["mobile"]["projects"]) == ["linux"]  # the board's [mobile] projects
    assert not (linux / "android").exists() and (linux / "linux" / "main.c").is_file()
    program = linux / "build" / "firmware"
    model = linux / "kws_ref_model.tflite"
    options = "-o BatchMode=yes -o ConnectTimeout=10"
    if result["manifest"]["firmware"]:
        report = flash_build(linux, dry_run=True, port="ssh://pi@raspberrypi.local:2222")
        assert report["commands"] == [
            f"ssh {options} -p 2222 pi@raspberrypi.local mkdir -p /tmp/edgekit",
            f"scp {options} -P 2222 {program} {model} pi@raspberrypi.local:/tmp/edgekit/",
            f"ssh {options} -p 2222 pi@raspberrypi.local -T /tmp/edgekit/firmware"]
    with_benchmark = flash_build(linux, dry_run=True, port="pi@pi5", extra={"benchmark_model": "/usr/bin/bm"})
    assert with_benchmark["commands"][-1] == (
        f"ssh {options} pi@pi5 /usr/bin/bm --graph=/tmp/edgekit/kws_ref_model.tflite --num_threads=1 "
        "--num_runs=50 --warmup_runs=5 --report_peak_memory_footprint=true --use_xnnpack=true")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=120)


def test_without_a_device_the_error_is_one_line_naming_what_is_missing(kws_builds):
    android, linux, _, _ = kws_builds
    done = _cli("profile", str(android))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert "\n" not in line
    if shutil.which("adb"):
        assert "no Android device for adb" in line
    else:
        assert line == "error: program adb not found; install it with apt-get install adb"
    done = _cli("profile", str(linux))
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: runner ssh needs linux-aarch64's address: pass --port user@host (or ssh://user@host:port)")
    done = _cli("flash", str(linux), "--port", "not an address")
    assert done.returncode == 2 and "is not an ssh address; expected user@host" in done.stderr
