"""Flash of the native backend on a Cortex-M4F: the kernel library's code, and each model's code apart from its weights.

Compiles templates/native/ek_kernels.c and each MLPerf Tiny model's generated model.c with arm-none-eabi-gcc
(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16, -O2 and -Os) and reads the sections with
`arm-none-eabi-size -A`: .text is code, .rodata the constants (weights, biases, multipliers, shifts, parameter
structs). The whole kernel library is counted; a linker with --gc-sections keeps only the kernels a model calls.

    python benchmarks/native_code_size.py [--json]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models")) / "mlperf_tiny"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c99", "-ffunction-sections",
       "-fdata-sections"]


def sections(obj: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True, check=True).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            key = ".text" if parts[0].startswith(".text") else ".rodata" if parts[0].startswith(".rodata") else None
            if key:
                sizes[key] = sizes.get(key, 0) + int(parts[1])
    return sizes


def compile_object(source: Path, opt: str, folder: Path) -> dict[str, int]:
    obj = folder / (source.stem + opt.replace("-", "_") + ".o")
    subprocess.run(["arm-none-eabi-gcc", *CPU, opt, "-I", str(source.parent), "-c", str(source), "-o", str(obj)],
                   check=True)
    return sections(obj)


def main() -> int:
    from rich.console import Console

    from edgekit.codegen.native import generate_native_model
    from edgekit.console import table
    from edgekit.resources import templates_dir
    from edgekit.tflite_model import load_tflite
    from tests.conftest import INT8_MODELS

    if shutil.which("arm-none-eabi-gcc") is None:
        print("arm-none-eabi-gcc not found; install gcc-arm-none-eabi", file=sys.stderr)
        return 1
    records = {"kernels": {}, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for opt in ("-O2", "-Os"):
            records["kernels"][opt] = compile_object(templates_dir() / "native" / "ek_kernels.c", opt, tmp)
        for name, relative in INT8_MODELS.items():
            graph = load_tflite(SHARED / relative)
            folder = tmp / name
            model = generate_native_model(graph, folder)
            s = compile_object(folder / "model.c", "-O2", tmp)
            records["models"].append({"model": name, "layers": len(model.layers), "code": s.get(".text", 0),
                                      "constants": s.get(".rodata", 0), "weights": model.weight_bytes,
                                      "tflite_bytes": len(graph.model_bytes), "arena": model.arena_bytes})
    if "--json" in sys.argv:
        print(json.dumps(records, indent=2))
        return 0
    console = Console()
    console.print(table("Kernel library ek_kernels.c, Cortex-M4F (all kernels)", ["build", ".text B", ".rodata B"],
                        [[opt, s.get(".text", 0), s.get(".rodata", 0)] for opt, s in records["kernels"].items()]))
    console.print(table("Generated model.c, Cortex-M4F -O2 (code apart from the weights)",
                        ["model", "layers", "code .text B", ".rodata B", "of which weights B", ".tflite B"],
                        [[m["model"], m["layers"], m["code"], m["constants"], m["weights"], m["tflite_bytes"]]
                         for m in records["models"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
