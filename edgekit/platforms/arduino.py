"""The arduino platform: an Arduino sketch (arduino-cli), the tflite-micro library from the Arduino library
manager (Chirale_TensorFlowLite)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from edgekit.codegen.common import project_name, render
from edgekit.platforms.base import BuildOutput, Platform, Toolchain, version_text, write_text
from edgekit.platforms.sdk_tools import run_logged, sizes_of
from edgekit.platforms.tflm_scaffold import finish, scaffold_context


def arduino_compile_command(board, sketch: str, cli: str = "arduino-cli", output_dir: str = "build") -> list[str]:
    """The compile command of an Arduino project: edgekit's version as EK_VERSION (a sketch has no build file
    to carry it), the images in `output_dir` (build/<sketch>.ino.elf, .bin, .hex) where `edgekit flash` finds
    them."""
    fqbn = str(board.flash.get("fqbn", "<fqbn>"))
    return [cli, "compile", "--fqbn", fqbn, "--build-property",
            f'compiler.c.extra_flags=-DEK_VERSION="{version_text()}"', "--output-dir", output_dir, sketch]


class ArduinoPlatform(Platform):
    name = "arduino"
    kernels = "cmsis-nn"
    cxx_ext = "cpp"  # arduino-cli compiles .c and .cpp files of the sketch folder (not .cc)
    libraries = ("tflite-micro",)

    def model_dir(self, board, graph) -> str:
        return project_name(graph)  # the sketch file names the folder

    def generate(self, graph, board, root: Path, output):
        sketch = project_name(graph)
        ctx = dict(scaffold_context(self, graph, board, output, sketch), sketch=sketch)
        written: list[str] = []
        write_text(root, f"{sketch}/{sketch}.ino", render("tflm/arduino/sketch.ino.j2", **ctx), written)
        write_text(root, f"{sketch}/edgekit_platform_arduino.cpp",
                   render("tflm/arduino/edgekit_platform_arduino.cpp.j2", **ctx), written)
        return finish(self, root, ctx, output, sketch, written, shlex.join(arduino_compile_command(board, sketch)),
                      f"build/{sketch}.ino.elf")

    def toolchain(self, board, output=None, env=None) -> Toolchain:
        cli = shutil.which("arduino-cli")
        if cli is None:
            return Toolchain(self.name, False, missing="arduino-cli not found: install it and the board's core")
        return Toolchain(self.name, True, {"arduino-cli": cli})

    def compile(self, root: Path, board, project, toolchain) -> BuildOutput:
        root = Path(root).resolve()
        log = root / "build" / "edgekit-build.log"
        name = project.project_name
        run_logged([arduino_compile_command(board, str(root / name), toolchain.programs["arduino-cli"],
                                            str(root / "build"))], root, log, "arduino-cli compile")
        return BuildOutput(f"build/{name}.ino.elf",
                           sizes_of(shutil.which("arm-none-eabi-size"), root / "build" / f"{name}.ino.elf"),
                           str(log.relative_to(root)))
