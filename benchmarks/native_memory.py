"""RAM of the native backend's arena against TFLite Micro's, per MLPerf Tiny int8 model.

Three figures per model: the native arena (in-place-aware static plan: an output may overlap an input that dies
where it is written), the plain lifetime plan (no overlap, edgekit.memory_plan's default), and the arena TFLite
Micro really allocates (edgekit.reference.tflm_arena_usage, 64-bit host: its persistent part is larger than on a
32-bit target, see edgekit.analyze.ARENA_32BIT). Goal: native <= 0.75 x TFLite Micro on every model.

    python benchmarks/native_memory.py [--json]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models")) / "mlperf_tiny"
GOAL = 0.75


def main() -> int:
    from rich.console import Console

    from edgekit.codegen.native import generate_native_model
    from edgekit.console import table
    from edgekit.memory_plan import plan_activations
    from edgekit.reference import tflm_arena_usage
    from edgekit.tflite_model import load_tflite
    from tests.conftest import INT8_MODELS

    rows, records = [], []
    for name, relative in INT8_MODELS.items():
        graph = load_tflite(SHARED / relative)
        with tempfile.TemporaryDirectory() as folder:
            native = generate_native_model(graph, folder).arena_bytes
        plain = plan_activations(graph).peak_bytes
        tflm = tflm_arena_usage(graph.model_bytes)
        ratio = native / tflm.total_bytes
        records.append({"model": name, "native_arena": native, "plain_plan": plain, "tflm_arena": tflm.total_bytes,
                        "tflm_head": tflm.head_bytes, "ratio": round(ratio, 3), "meets_goal": ratio <= GOAL})
        rows.append([name, native, plain, tflm.total_bytes, tflm.head_bytes, f"{ratio:.2f}",
                     "yes" if ratio <= GOAL else "NO"])
    if "--json" in sys.argv:
        print(json.dumps({"goal": GOAL, "models": records}, indent=2))
    else:
        Console().print(table(f"Native arena vs TFLite Micro (goal <= {GOAL} x)",
                              ["model", "native arena B", "plain plan B", "TFLM arena B", "TFLM head B",
                               "native/TFLM", "goal"], rows))
    return 0 if all(r["meets_goal"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
