"""The pico-sdk platform: a Pico SDK CMake project for the RP2040 (USB CDC serial), tflite-micro from
pico-tflmicro."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekit.codegen.common import render
from edgekit.platforms.base import BuildOutput, Platform, Toolchain, write_text
from edgekit.platforms.sdk_tools import has_cxx_library, run_logged, sizes_of
from edgekit.platforms.tflm_scaffold import finish, scaffold_context

ARM_PACKAGES = "apt-get install cmake gcc-arm-none-eabi libnewlib-arm-none-eabi"


class PicoSdkPlatform(Platform):
    name = "pico-sdk"
    kernels = "cmsis-nn"
    libraries = ("tflite-micro",)

    def model_dir(self, board, graph) -> str:
        return "src"

    def generate(self, graph, board, root: Path, output):
        ctx = scaffold_context(self, graph, board, output, "src")
        written: list[str] = []
        for template, target in [("CMakeLists.txt.j2", "CMakeLists.txt"),
                                 ("edgekit_platform_pico.c.j2", "src/edgekit_platform_pico.c"),
                                 ("main.c.j2", "src/main.c")]:
            write_text(root, target, render(f"tflm/pico-sdk/{template}", **ctx), written)
        needs_tflm = "tflite-micro" in ctx["libraries"]
        hint = ("cmake -B build -DPICO_SDK_PATH=<sdk> -DPICO_TFLMICRO_PATH=<pico-tflmicro> && cmake --build build"
                if needs_tflm else "cmake -B build -DPICO_SDK_PATH=<sdk> && cmake --build build")
        # pico_add_extra_outputs() writes the .uf2 (and .elf, .bin, .hex) into build/.
        return finish(self, root, ctx, output, "src", written, hint, f"build/{ctx['project_name']}.uf2")

    def toolchain(self, board, output=None, env=None) -> Toolchain:
        env = os.environ if env is None else env
        needs_tflm = output is None or "tflite-micro" in output.needs.library_names
        programs = {name: shutil.which(name) for name in ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-g++",
                                                          "arm-none-eabi-size")}
        absent = [name for name, path in programs.items() if path is None]
        if absent:
            return Toolchain(self.name, False, missing=f"{', '.join(absent)} not found: {ARM_PACKAGES} "
                                                       f"libstdc++-arm-none-eabi-newlib")
        if needs_tflm and not has_cxx_library(programs["arm-none-eabi-g++"]):
            return Toolchain(self.name, False, programs,
                             missing="arm-none-eabi-g++ has no C++ standard library (<vector> not found), which "
                                     "TFLite Micro needs: apt-get install libstdc++-arm-none-eabi-newlib (or "
                                     "bash scripts/setup.sh --tflm)")
        sdk, tflmicro = env.get("PICO_SDK_PATH"), env.get("PICO_TFLMICRO_PATH")
        if not sdk or not (Path(sdk) / "pico_sdk_init.cmake").is_file():
            return Toolchain(self.name, False, programs, missing="no Pico SDK: set PICO_SDK_PATH")
        found = {**programs, "PICO_SDK_PATH": sdk}
        if needs_tflm:
            if not tflmicro or not (Path(tflmicro) / "CMakeLists.txt").is_file():
                return Toolchain(self.name, False, programs, missing="no pico-tflmicro: set PICO_TFLMICRO_PATH")
            found["PICO_TFLMICRO_PATH"] = tflmicro
        return Toolchain(self.name, True, found)

    def compile(self, root: Path, board, project, toolchain) -> BuildOutput:
        root = Path(root).resolve()
        log = root / "build" / "edgekit-build.log"
        defines = [f"-D{key}={toolchain.programs[key]}" for key in ("PICO_SDK_PATH", "PICO_TFLMICRO_PATH")
                   if key in toolchain.programs]
        cmake = toolchain.programs["cmake"]
        run_logged([[cmake, "-S", str(root), "-B", str(root / "build"), *defines],
                    [cmake, "--build", str(root / "build"), "-j", str(os.cpu_count() or 2)]], root, log,
                   "cmake build")
        elf = f"build/{project.project_name}.elf"
        return BuildOutput(elf, sizes_of(toolchain.programs["arm-none-eabi-size"], root / elf),
                           str(log.relative_to(root)))
