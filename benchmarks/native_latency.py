"""Host latency of the native backend against TFLite Micro's interpreter and LiteRT, per MLPerf Tiny int8 model.

All three run the same random int8 input in this one benchmark run, on one thread: the generated C compiled with
gcc -O2 (timed inside its harness, templates/native/test_main.c, so no process start-up is counted), the
tflite-micro package's interpreter and LiteRT (ai_edge_litert, num_threads=1), both timed around invoke() from
Python. Host figures compare implementations; device figures come from `edgekit profile` (QEMU or a board).

    python benchmarks/native_latency.py [--models kws,ad] [--json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models")) / "mlperf_tiny"
BUDGET_S = 1.0  # time spent per model and runtime, roughly


def _time_loop(invoke) -> float:
    """Mean microseconds per call, over as many calls as fit in the budget (after one warm-up)."""
    invoke()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < BUDGET_S or runs < 3:
        invoke()
        runs += 1
    return (time.perf_counter() - start) / runs * 1e6


def native_us(graph, sample: np.ndarray, folder: Path) -> float:
    from edgekit.codegen.native import generate_native_model
    from edgekit.resources import templates_dir

    generate_native_model(graph, folder)
    program = folder / "run"
    subprocess.run(["gcc", "-std=c99", "-O2", "-I", str(folder), "-o", str(program), str(folder / "model.c"),
                    str(folder / "ek_kernels.c"), str(templates_dir() / "native" / "test_main.c")], check=True)
    once = float(subprocess.run([str(program), "1"], input=sample.tobytes(), capture_output=True, check=True).stdout)
    runs = max(3, int(BUDGET_S * 1e6 / max(once, 1.0)))
    return float(subprocess.run([str(program), str(runs)], input=sample.tobytes(), capture_output=True,
                                check=True).stdout)


def tflm_us(graph, sample: np.ndarray) -> float:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(bytes(graph.model_bytes), arena_size=16 * 1024 * 1024)
    interpreter.set_input(sample.reshape(graph.input_tensors()[0].shape), 0)
    return _time_loop(interpreter.invoke)


def litert_us(graph, sample: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(graph.model_bytes), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], sample.reshape(detail["shape"]))
    return _time_loop(interpreter.invoke)


def main() -> int:
    from rich.console import Console

    from edgekit.console import table
    from edgekit.tflite_model import load_tflite
    from tests.conftest import INT8_MODELS

    names = list(INT8_MODELS)
    if "--models" in sys.argv:
        names = sys.argv[sys.argv.index("--models") + 1].split(",")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            graph = load_tflite(SHARED / INT8_MODELS[name])
            sample = np.random.default_rng(0).integers(-128, 128, graph.input_tensors()[0].size, dtype=np.int8)
            native = native_us(graph, sample, Path(tmp) / name)
            tflm = tflm_us(graph, sample)
            litert = litert_us(graph, sample)
            records.append({"model": name, "native_us": round(native, 1), "tflm_us": round(tflm, 1),
                            "litert_us": round(litert, 1), "tflm_over_native": round(tflm / native, 2),
                            "litert_over_native": round(litert / native, 2)})
    if "--json" in sys.argv:
        print(json.dumps({"models": records}, indent=2))
        return 0
    Console().print(table("Host latency per inference, one thread (x = times slower than native)",
                          ["model", "native us", "TFLM us", "LiteRT us", "TFLM / native", "LiteRT / native"],
                          [[r["model"], r["native_us"], r["tflm_us"], r["litert_us"], f"{r['tflm_over_native']}x",
                            f"{r['litert_over_native']}x"] for r in records]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
