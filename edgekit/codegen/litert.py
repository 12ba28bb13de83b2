"""The LiteRT deliverables of a phone or Linux board: an Android Gradle project and a Linux C project.

Both run the chosen variant's .tflite with LiteRT (the Android one through the Kotlin `CompiledModel` API, the
Linux one through the C API) and carry the model's input/output shapes and quantization as constants read from
the file itself. Neither SDK is on the registries edgekit installs from, so these are generated, and their READMEs
say how to build them. Which projects a board gets is its data (`[mobile] projects`).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.codegen.common import c_comment, render
from edgekit.errors import EdgekitError
from edgekit.platforms.base import version_text

LITERT_VERSION = "2.3.0"  # com.google.ai.edge.litert:litert on Maven, the ai-edge-litert release edgekit runs
AGP_VERSION = "8.5.2"
KOTLIN_VERSION = "1.9.24"
COMPILE_SDK = 35
PACKAGE = "dev.edgekit.model"
ASSET = "model.tflite"
PROJECTS = ("android", "linux")
KOTLIN_ACCELERATORS = {"gpu": "GPU", "npu": "NPU", "xnnpack": "CPU"}
TEMPLATES = {
    "android": ["settings.gradle.kts", "build.gradle.kts", "gradle.properties", "app/build.gradle.kts",
                "app/src/main/AndroidManifest.xml", "README.md",
                ("app/src/main/kotlin/EdgekitModel.kt", "app/src/main/kotlin/{package_path}/EdgekitModel.kt"),
                ("app/src/main/kotlin/BenchmarkActivity.kt",
                 "app/src/main/kotlin/{package_path}/BenchmarkActivity.kt")],
    "linux": ["main.c", "CMakeLists.txt", "README.md"],
}
MODEL_PATHS = {"android": f"app/src/main/assets/{ASSET}", "linux": ASSET}


def float_literal(value: float) -> str:
    """A float as Kotlin and C both read it (always with a point or an exponent)."""
    text = f"{float(value):.9g}"
    return text if any(c in text for c in ".einf") else text + ".0"


def tensor(t) -> dict:
    quantized = t.dtype in ("int8", "uint8") and t.scale.size > 0 and float(t.scale[0]) > 0
    if t.dtype not in ("float32", "int8") or (t.dtype == "int8" and not quantized):
        raise EdgekitError(f"tensor '{c_comment(t.name)}' is {t.dtype}; the LiteRT projects take float32 or "
                           "quantized int8 inputs and outputs")
    return {"shape": [int(d) for d in t.shape], "dtype": t.dtype, "elements": int(t.size), "quantized": quantized,
            "scale": float_literal(t.scale[0]) if quantized else "0.0",
            "zero_point": int(t.zero_point[0]) if quantized else 0}


def write_projects(root: Path, board, graph, variant: str, rule: str, build_dir: str,
                   projects=None) -> dict[str, list[str]]:
    """The board's LiteRT projects under root/<project>/, around `graph` (the chosen variant's .tflite)."""
    mobile = board.data.get("mobile") or {}
    projects = list(projects or mobile.get("projects") or PROJECTS)
    unknown = [p for p in projects if p not in PROJECTS]
    if unknown:
        raise EdgekitError(f"board {board.name}: [mobile] projects names {', '.join(unknown)}; expected some of: "
                           f"{', '.join(PROJECTS)}")
    accelerator = str(mobile.get("accelerator", "xnnpack"))
    context = {
        "version": version_text(), "board": board.name, "model_comment": c_comment(graph.name),
        "project_name": "edgekit_" + "".join(c if c.isalnum() else "_" for c in graph.name)[:40],
        "model_file": c_comment(f"{graph.name}.tflite"), "sha256": graph.sha256, "variant": variant,
        "rule": c_comment(rule), "asset": ASSET, "model_bytes": f"{len(graph.model_bytes):,}",
        "input": tensor(graph.input_tensors()[0]), "output": tensor(graph.output_tensors()[0]),
        "package": PACKAGE, "package_path": PACKAGE.replace(".", "/"), "litert_version": LITERT_VERSION,
        "agp_version": AGP_VERSION, "kotlin_version": KOTLIN_VERSION, "compile_sdk": COMPILE_SDK,
        "min_sdk": int(mobile.get("min_sdk", 24)), "abi": str(mobile.get("abi", "arm64-v8a")),
        "gpu": accelerator == "gpu", "kotlin_accelerator": KOTLIN_ACCELERATORS.get(accelerator, "CPU"),
        "accelerator_note": c_comment(f"{board.name}'s [mobile] accelerator = {accelerator}"),
        "runs": 100, "warmup": 5, "build_dir": c_comment(build_dir),
    }
    written = {}
    for project in projects:
        files = []
        for entry in TEMPLATES[project]:
            template, target = entry if isinstance(entry, tuple) else (entry, entry)
            target = target.format(package_path=context["package_path"])
            path = root / project / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(f"litert/{project}/{template}.j2", **context), encoding="utf-8", newline="\n")
            files.append(f"{project}/{target}")
        model_path = root / project / MODEL_PATHS[project]
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model_path.write_bytes(graph.model_bytes)
        files.append(f"{project}/{MODEL_PATHS[project]}")
        written[project] = sorted(files)
    return written
