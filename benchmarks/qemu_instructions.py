"""Instructions per inference of every MLPerf Tiny int8 model on the emulated Cortex-M4F (mps2-an386).

Each model is built with `edgekit build` (native backend by default), run in QEMU with `-icount shift=0` (one
instruction per nanosecond of virtual time, so SysTick counts become instruction counts) and profiled with
`edgekit profile`; outputs are checked against TFLite Micro on the same inputs. Instructions are not cycles: a
real Cortex-M4 needs more cycles than instructions (loads, multiplies, branches).

    python benchmarks/qemu_instructions.py [--backend native] [--runs 3] [--models kws,ad] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models"))
sys.path.insert(0, str(REPO))
from tests.conftest import INT8_MODELS as MODELS  # noqa: E402  (one table of the MLPerf Tiny int8 models)

README_NAMES = {"kws": "KWS", "vww": "VWW", "ic": "IC", "ad": "AD", "sww": "streaming wakeword"}


def readme_macs() -> dict:
    """MACs per inference as the shared README lists them (used when edgekit.analyze gives none)."""
    path = SHARED / "README.md"
    if not path.is_file():
        return {}
    text = " ".join(path.read_text(encoding="utf-8").split())
    match = re.search(r"Multiply-accumulates per inference[^:]*:(.*?)\.", text)
    found = {}
    for name, label in README_NAMES.items():
        m = re.search(rf"{label} ([\d,]+)", match.group(1)) if match else None
        if m:
            found[name] = int(m.group(1).replace(",", ""))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="native", choices=["native", "tflm"])
    parser.add_argument("--board", default="mps2-an386")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from edgekit.build import build
    from edgekit.errors import EdgekitError
    from edgekit.profile import profile_build

    fallback = readme_macs()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        for name in args.models.split(","):
            model = SHARED / "mlperf_tiny" / MODELS[name]
            row = {"model": name, "board": args.board, "backend": args.backend}
            try:
                started = time.monotonic()
                out = Path(tmp) / name
                build(model, args.board, out, backend=args.backend, quiet=True)
                row["build_s"] = round(time.monotonic() - started, 1)
                started = time.monotonic()
                report = profile_build(out, runs=args.runs)
                row["profile_s"] = round(time.monotonic() - started, 1)
            except EdgekitError as error:
                row["error"] = str(error)
                rows.append(row)
                print(f"{name}: {error}", file=sys.stderr)
                continue
            macs = report.get("macs") or fallback.get(name)
            ins = report["instructions"]
            row.update({
                "macs": macs, "macs_source": "edgekit.analyze" if report.get("macs") else "shared README",
                "instructions": ins, "instructions_per_mac": round(ins["median"] / macs, 2) if macs else None,
                "arena_bytes": report["arena_bytes"], "stack_bytes": report["stack_bytes"],
                "flash_bytes": report["flash_bytes"], "max_abs_diff": report["max_abs_diff"],
            })
            rows.append(row)
            print(f"{name}: {ins['median']:,} instructions, {row['instructions_per_mac']} per MAC", file=sys.stderr)

    if args.json:
        print(json.dumps({"benchmark": "qemu_instructions", "runs": args.runs, "results": rows}, indent=2))
        return 0
    header = (f"{'model':9} {'MACs':>11} {'instructions':>13} {'instr/MAC':>9} {'spread':>7} {'arena B':>9} "
              f"{'stack B':>8} {'flash B':>9} {'max|diff|':>9} {'build s':>7} {'profile s':>9}")
    print(f"{args.board}, {args.backend} backend, QEMU -icount shift=0, median of {args.runs} runs")
    print(header)
    for row in rows:
        if "error" in row:
            print(f"{row['model']:9} error: {row['error']}")
            continue
        ins = row["instructions"]
        spread = (ins["max"] - ins["min"]) / ins["median"]
        print(f"{row['model']:9} {row['macs'] or 0:>11,} {ins['median']:>13,} {row['instructions_per_mac'] or 0:>9.2f} "
              f"{spread:>7.2%} {row['arena_bytes']:>9,} {row['stack_bytes'] or 0:>8,} {row['flash_bytes'] or 0:>9,} "
              f"{row['max_abs_diff']:>9} {row['build_s']:>7} {row['profile_s']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
