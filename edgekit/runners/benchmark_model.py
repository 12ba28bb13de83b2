"""LiteRT's `benchmark_model` on a device: its command line for a variant, and its output read into a report.

The output format is the one tflite/tools/benchmark documents and prints (BenchmarkLoggingListener):

    INFO: count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
    INFO: Inference timings in us: Init: 38467, First inference: 83235, Warmup (avg): 83235, Inference (avg): 79760.9
    INFO: Memory footprint delta from the start of the tool (MB): init=14.4414 overall=14.8164
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 15.2

(the count= line comes once for the warm-up runs, then once for the timed runs; older builds print
"Timings (microseconds): count=..." and "Average inference timings in us: Warmup: W, Init: I, Inference: A"; logcat
or "INFO:" prefixes are ignored.) The delegate flags per accelerator come from the board file
(`[mobile] benchmark_flags`), the runs and threads from the caller.
"""

from __future__ import annotations

import re

from edgekit.errors import EdgekitError

NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
STATS = re.compile(rf"count={NUMBER} first={NUMBER} curr={NUMBER} min={NUMBER} max={NUMBER} avg={NUMBER} "
                   rf"std={NUMBER}")
TIMINGS = re.compile(rf"Inference timings in us: Init: {NUMBER}, First inference: {NUMBER}, Warmup \(avg\): "
                     rf"{NUMBER}, Inference \(avg\): {NUMBER}")
OLD_TIMINGS = re.compile(rf"Average inference timings in us: Warmup: {NUMBER}, Init: {NUMBER}, Inference: {NUMBER}")
MEMORY = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={NUMBER} overall={NUMBER}")
PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {NUMBER}")
MODEL_SIZE = re.compile(rf"The input model file size \(MB\): {NUMBER}")
DEFAULT_RUNS = 50
DEFAULT_FLAGS = {"xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"]}


def parse_benchmark_output(text: str) -> dict:
    """The figures of one benchmark_model run; an EdgekitError naming what is missing when it did not finish."""
    stats = STATS.findall(text)
    timings = TIMINGS.search(text)
    old = OLD_TIMINGS.search(text)
    if not stats or not (timings or old):
        error = next((line.strip() for line in text.splitlines() if re.search(r"\bERROR\b|Failed|failed", line)),
                     None)
        raise EdgekitError("benchmark_model did not report its timings"
                           + (f": {error[:200]}" if error else " (no 'Inference timings in us' line)"))
    count, first, _, low, high, avg, std = (float(v) for v in stats[-1])  # the timed runs come last
    report = {"runs": int(count), "latency_us": {"min": low, "avg": avg, "max": high, "std": std},
              "first_timed_us": first}
    if timings:
        init, first_inference, warmup, inference = (float(v) for v in timings.groups())
        report.update(init_us=init, first_inference_us=first_inference, warmup_avg_us=warmup,
                      inference_avg_us=inference)
    else:
        warmup, init, inference = (float(v) for v in old.groups())
        report.update(init_us=init, first_inference_us=None, warmup_avg_us=warmup, inference_avg_us=inference)
    memory = MEMORY.search(text)
    peak = PEAK.search(text)
    size = MODEL_SIZE.search(text)
    report["memory_mb"] = {"init": float(memory.group(1)) if memory else None,
                           "overall": float(memory.group(2)) if memory else None,
                           "peak": float(peak.group(1)) if peak else None}
    report["model_size_mb"] = float(size.group(1)) if size else None
    return report


def accelerator_for(board, variant: str | None) -> str:
    """The accelerator the run uses: the board's, when the variant suits it, else XNNPACK (the CPU)."""
    from edgekit.variants import ACCELERATORS

    accelerator = str((board.data.get("mobile") or {}).get("accelerator", "xnnpack"))
    suits = ACCELERATORS.get(variant or "int8", ("xnnpack",))
    return accelerator if accelerator in suits else "xnnpack"


def benchmark_arguments(board, model: str, variant: str | None, threads: int = 1,
                        runs: int = DEFAULT_RUNS) -> tuple[list[str], str]:
    """(benchmark_model's arguments after the program, the accelerator they select)."""
    accelerator = accelerator_for(board, variant)
    flags = (board.data.get("mobile") or {}).get("benchmark_flags", {}).get(accelerator)
    flags = list(flags if flags is not None else DEFAULT_FLAGS.get(accelerator, []))
    return [f"--graph={model}", f"--num_threads={int(threads)}", f"--num_runs={int(runs)}", "--warmup_runs=5",
            "--report_peak_memory_footprint=true", *flags], accelerator


def profile_report(build, runner_name: str, parsed: dict, accelerator: str, command: list[str]) -> dict:
    """A benchmark_model run in the shape of `edgekit profile`'s report (latency in µs, memory)."""
    latency = parsed["latency_us"]
    return {
        "board": build.board.name, "runner": runner_name, "model": command_model(command),
        "variant": (build.manifest.get("mobile") or {}).get("chosen"), "accelerator": accelerator,
        "runs": parsed["runs"], "emulated": False,
        "latency_us": {"min": latency["min"], "median": None, "avg": latency["avg"], "max": latency["max"],
                       "std": latency["std"]},
        "latency_kind": "measured on the device by LiteRT's benchmark_model (it reports the mean, not a median)",
        "init_us": parsed["init_us"], "first_inference_us": parsed["first_inference_us"],
        "warmup_avg_us": parsed["warmup_avg_us"], "memory_mb": parsed["memory_mb"],
        "command": command, "benchmark_model": True,
    }


def command_model(command: list[str]) -> str | None:
    return next((arg.split("=", 1)[1] for arg in command if arg.startswith("--graph=")), None)
