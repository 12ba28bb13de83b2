"""Native firmware on QEMU's Cortex-M machines: size, stack, and instructions per inference of an MLPerf Tiny model.

QEMU runs with -icount shift=0, so one instruction is 1 ns of emulated time and the SysTick counts convert
exactly to instructions (instructions = ticks * 1e9 / SysTick Hz). Instructions are not a real board's cycles.
Each board runs twice to show the count repeats.

    python benchmarks/firmware_qemu.py [model name: ad, kws, ic, vww] [boards...]
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekit.boards import load_board
from edgekit.codegen.app import compile_project, generate_native_project
from edgekit.flash import Build, QemuRunner, RunnerArgs
from edgekit.tflite_model import load_tflite

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import INT8_MODELS, SHARED_MODELS  # noqa: E402

BOARDS = ["mps2-an385", "mps2-an386", "mps2-an500", "mps3-an547"]


def measure(graph, board_name: str, folder: Path, data_seed: int = 0) -> dict:
    board = load_board(board_name)
    started = time.monotonic()
    project = generate_native_project(graph, board, folder / board_name)
    result = compile_project(project.path, board)
    build_seconds = time.monotonic() - started
    build = Build(project.path, {"board": board.name, "firmware": project.firmware}, board)
    runs = []
    for _ in range(2):
        session = QemuRunner.create(board, build, RunnerArgs()).open_session()
        try:
            device = session.device
            info = device.info()
            data = np.random.default_rng(data_seed).integers(-128, 128, size=info.input_bytes, dtype=np.int8)
            device.load_input(data.tobytes())
            device.infer(runs=1, warmup=0)
            ticks, _ = device.ticks()
            runs.append((ticks, device.memory()["stack"]))
        finally:
            session.close()
    hz = board.emulator["systick_hz"]
    return {"board": board_name, "ticks": [r[0] for r in runs], "instructions": runs[0][0] * 1_000_000_000 // hz,
            "stack": runs[0][1], "flash": result.sizes["flash_bytes"], "ram_static": result.sizes["ram_static_bytes"],
            "build_s": round(build_seconds, 2)}


def main(argv):
    model = argv[0] if argv else "ad"
    boards = argv[1:] or BOARDS
    graph = load_tflite(SHARED_MODELS / INT8_MODELS[model])
    print(f"model {model}: {len(graph.operators)} operators")
    print(f"{'board':12} {'ticks (2 runs)':>20} {'instructions':>14} {'stack B':>8} {'flash B':>9} {'RAM B':>9} "
          f"{'build s':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for name in boards:
            r = measure(graph, name, Path(folder))
            print(f"{r['board']:12} {str(r['ticks']):>20} {r['instructions']:>14,} {r['stack']:>8} {r['flash']:>9,} "
                  f"{r['ram_static']:>9,} {r['build_s']:>8}")


if __name__ == "__main__":
    main(sys.argv[1:])
