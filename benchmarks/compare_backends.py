"""The backends side by side on every MLPerf Tiny int8 model: `edgekit compare` for each, one summary.

For each model, edgekit.compare.compare builds and profiles the native backend and TFLite Micro with reference
and CMSIS-NN kernels on the same board (emulated: instructions under QEMU -icount), then this prints one row per
(model, backend): instructions, the ratio to the native backend in the same run, arena used, peak stack, code and
read-only data, max_abs_diff against the reference interpreter and the worst max_abs_diff between backends.
TFLite Micro trees come from TFLM_DIR (reference kernels) and TFLM_DIR_CMSIS_NN (or --tflm-dir, repeated);
a backend without one is reported as skipped.

    python benchmarks/compare_backends.py [--board mps2-an386] [--runs 1] [--models kws,ad] [-o DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models"))
sys.path.insert(0, str(REPO))
from tests.conftest import INT8_MODELS as MODELS  # noqa: E402  (one table of the MLPerf Tiny int8 models)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="mps2-an386")
    parser.add_argument("--backends", default="native,tflm-reference,tflm-cmsis-nn")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tflm-dir", action="append", default=[])
    parser.add_argument("-o", "--output", help="keep the builds and compare.json files here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from edgekit.compare import compare
    from edgekit.errors import EdgekitError

    root = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="edgekit-compare-"))
    documents = {}
    for name in args.models.split(","):
        model = SHARED / "mlperf_tiny" / MODELS[name]
        if not model.is_file():
            print(f"{name}: {model} not found (set EDGEKIT_SHARED_MODELS)", file=sys.stderr)
            return 1
        started = time.monotonic()
        try:
            documents[name] = compare(model, args.board, args.backends, out_dir=root / name, runs=args.runs,
                                      tflm_dirs=args.tflm_dir, quiet=args.json)
        except EdgekitError as error:
            print(f"{name}: {error}", file=sys.stderr)
            documents[name] = json.loads((root / name / "compare.json").read_text()) \
                if (root / name / "compare.json").is_file() else {"error": str(error)}
        print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(documents, indent=2))
        return 0
    print(f"board {args.board}, {args.runs} run(s) each, random int8 inputs (seed 0); figures in {root}")
    header = (f"{'model':9} {'backend':15} {'instructions':>13} {'x native':>9} {'arena B':>9} {'stack B':>8} "
              f"{'code B':>8} {'rodata B':>9} {'diff ref':>8} {'diff bk':>7}  status")
    print(header)
    print("-" * len(header))
    for name, document in documents.items():
        if "backends" not in document:
            print(f"{name:9} error: {document.get('error')}")
            continue
        native = next((e for e in document["backends"] if e["backend"] == "native" and e["status"] == "ok"), None)
        worst = max((p["max_abs_diff"] for p in document["pairs"]), default=None)
        for e in document["backends"]:
            ratio = (f"{e['instructions'] / native['instructions']:.2f}" if native and e["instructions"] else "-")
            cells = [e["instructions"], ratio, e["arena_bytes"], e["stack_bytes"], e["code_bytes"], e["rodata_bytes"],
                     e["max_abs_diff_reference"], worst]
            text = [f"{c:,}" if isinstance(c, int) else ("-" if c is None else str(c)) for c in cells]
            status = e["status"] if e["status"] == "ok" else f"{e['status']}: {e['reason']}"
            print(f"{name:9} {e['backend']:15} {text[0]:>13} {text[1]:>9} {text[2]:>9} {text[3]:>8} {text[4]:>8} "
                  f"{text[5]:>9} {text[6]:>8} {text[7]:>7}  {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
