"""Native kernels against TFLite Micro (reference and CMSIS-NN kernels) in QEMU, per model and per op type.

Each model goes through `edgekit compare` (edgekit.compare) on each emulated board: the same .tflite, the same
arm-none-eabi-gcc, QEMU with -icount shift=0 (instructions, not cycles), every backend bit-exact-checked against
TFLite Micro's host interpreter. TFLite Micro backends run when a tree is given (--tflm-dir, or $TFLM_DIR and
$TFLM_DIR_CMSIS_NN); without one the table shows native alone. -Os: the native firmware of that same run is
recompiled with -Os in place of -O2 (its compile.log holds the command) and profiled again; edgekit builds TFLite
Micro's library at -O2 only, so the TFLM -Os column stays empty here.

    python benchmarks/peer_qemu.py [--boards mps2-an386,mps2-an500] [--models kws,vww] [--no-os] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models")) / "mlperf_tiny"
sys.path.insert(0, str(REPO))
from tests.conftest import INT8_MODELS as MODELS  # noqa: E402

BACKENDS = ("native", "tflm-reference", "tflm-cmsis-nn")


def native_os(folder: Path, runs: int) -> dict:
    """Recompile a native build folder with -Os (the same command otherwise) and profile it."""
    from edgekit.profile import profile_build

    log = folder / "build" / "compile.log"
    command = log.read_text(encoding="utf-8").splitlines()[0]
    if " -O2 " not in command:
        raise SystemExit(f"{log}: no -O2 in the compile command; cannot make the -Os build")
    command = re.sub(r'(-D\w+="[^"]*")', lambda m: "'" + m.group(1) + "'", command)  # the log drops the quotes
    subprocess.run(command.replace(" -O2 ", " -Os "), shell=True, cwd=folder, check=True, capture_output=True)
    partial = next((folder / "build").glob(".*.partial"))
    os.replace(partial, partial.with_name(partial.name[1:-len(".partial")]))
    report = profile_build(folder, runs=runs)
    ops: dict[str, int] = {}
    for layer in report["layers"]:
        ops[layer["op"]] = ops.get(layer["op"], 0) + (layer.get("instructions") or 0)
    return {"instructions": report["instructions"]["median"], "max_abs_diff": report["max_abs_diff"], "ops": ops}


def run(model: str, board: str, folder: Path, runs: int, with_os: bool) -> dict:
    from edgekit.compare import compare

    from edgekit.analyze import layers
    from edgekit.tflite_model import load_tflite

    doc = compare(SHARED / MODELS[model], board, list(BACKENDS), out_dir=folder, runs=runs)
    op_macs: dict[str, int] = {}
    for layer in layers(load_tflite(SHARED / MODELS[model])):
        op_macs[layer["op"]] = op_macs.get(layer["op"], 0) + layer["macs"]
    row = {"model": model, "board": board, "macs": doc["macs"], "op_macs": op_macs, "O2": {}, "Os": {},
           "skipped": {}}
    for entry in doc["backends"]:
        if entry["status"] != "ok":
            row["skipped"][entry["backend"]] = entry["reason"]
            continue
        row["O2"][entry["backend"]] = {
            "instructions": entry["instructions"], "max_abs_diff": entry["max_abs_diff_reference"],
            "arena_bytes": entry["arena_bytes"], "code_bytes": entry["code_bytes"],
            "ops": {op: v["instructions"] for op, v in entry["ops"].items()},
        }
    if with_os and "native" in row["O2"]:
        row["Os"]["native"] = native_os(folder / "native", runs)
    return row


def _m(n) -> str:
    return f"{n / 1e6:.2f} M" if n else "-"


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def print_tables(rows: list[dict]) -> None:
    print("| board | model | MACs | native -O2 | TFLM ref -O2 | TFLM+CMSIS-NN -O2 | native/CMSIS | native -Os | "
          "native instr/MAC -O2 | max|diff| |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        o2, os_ = r["O2"], r["Os"]
        nat = o2.get("native", {}).get("instructions")
        ref = o2.get("tflm-reference", {}).get("instructions")
        cm = o2.get("tflm-cmsis-nn", {}).get("instructions")
        diffs = [v["max_abs_diff"] for v in list(o2.values()) + list(os_.values())]
        print(f"| {r['board']} | {r['model']} | {_m(r['macs'])} | {_m(nat)} | {_m(ref)} | {_m(cm)} | "
              f"{_ratio(nat, cm)} | {_m(os_.get('native', {}).get('instructions'))} | "
              f"{nat / r['macs']:.2f} | {max(diffs) if diffs else '-'} |" if nat and r["macs"] else
              f"| {r['board']} | {r['model']} | - | - | - | - | - | - | - | - |")
    print()
    print("Per op type, instructions (-O2; native -Os last):")
    print("| board | model | op | native | TFLM ref | TFLM+CMSIS-NN | native/CMSIS | native -Os | native instr/MAC |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        native = r["O2"].get("native", {}).get("ops", {})
        for op in sorted(native, key=lambda k: -(native[k] or 0)):
            cm = r["O2"].get("tflm-cmsis-nn", {}).get("ops", {}).get(op)
            ref = r["O2"].get("tflm-reference", {}).get("ops", {}).get(op)
            nos = r["Os"].get("native", {}).get("ops", {}).get(op)
            macs = r["op_macs"].get(op)
            print(f"| {r['board']} | {r['model']} | {op} | {native[op]:,} | {ref or 0:,} | {cm or 0:,} | "
                  f"{_ratio(native[op], cm)} | {nos or 0:,} | {_ratio(native[op], macs)} |")
    for r in rows:
        for backend, reason in r["skipped"].items():
            print(f"{r['board']} {r['model']}: {backend} skipped: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="mps2-an386")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-os", action="store_true", help="skip the -Os rebuild of the native firmware")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekit-peer-") as tmp:
        for board in args.boards.split(","):
            for model in args.models.split(","):
                rows.append(run(model, board, Path(tmp) / f"{board}-{model}", args.runs, not args.no_os))
                print(f"{board} {model}: done", file=sys.stderr)
    if args.json:
        print(json.dumps({"benchmark": "peer_qemu", "results": rows}, indent=2))
    else:
        print_tables(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
