"""The esp-idf platform: an ESP-IDF project for the ESP32 family (Xtensa and RISC-V), built with idf.py.

The tflite-micro library comes from Espressif's component manager (esp-tflite-micro, with ESP-NN kernels).
The native backend's kernels run their portable C path there (their fast paths are Arm DSP instructions).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.codegen.common import render
from edgekit.platforms.base import BuildOutput, Platform, Toolchain, write_text
from edgekit.platforms.sdk_tools import run_logged, sizes_of
from edgekit.platforms.tflm_scaffold import finish, scaffold_context


class EspIdfPlatform(Platform):
    name = "esp-idf"
    kernels = "esp-nn"
    libraries = ("tflite-micro",)
    psram_arena = True

    def model_dir(self, board, graph) -> str:
        return "main"

    def generate(self, graph, board, root: Path, output):
        ctx = scaffold_context(self, graph, board, output, "main")
        written: list[str] = []
        for template, target in [("CMakeLists.txt.j2", "CMakeLists.txt"),
                                 ("main_CMakeLists.txt.j2", "main/CMakeLists.txt"),
                                 ("idf_component.yml.j2", "main/idf_component.yml"),
                                 ("sdkconfig.defaults.j2", "sdkconfig.defaults"),
                                 ("partitions.csv.j2", "partitions.csv"),
                                 ("edgekit_platform_esp.c.j2", "main/edgekit_platform_esp.c"),
                                 ("main.c.j2", "main/main.c")]:
            write_text(root, target, render(f"tflm/esp-idf/{template}", **ctx), written)
        target = board.data.get("idf", {}).get("target", "esp32")
        # idf.py writes the app image, the bootloader, the partition table and the offsets of each
        # (flasher_args.json, which the esptool runner reads) into build/.
        return finish(self, root, ctx, output, "main", written, f"idf.py set-target {target} && idf.py build",
                      f"build/{ctx['project_name']}.bin", {"flasher_args": "build/flasher_args.json"})

    def toolchain(self, board, output=None, env=None) -> Toolchain:
        idf = shutil.which("idf.py")
        if idf is None:
            return Toolchain(self.name, False, missing="idf.py not found: install ESP-IDF 5.x and run "
                                                       ". $IDF_PATH/export.sh")
        return Toolchain(self.name, True, {"idf.py": idf})

    def compile(self, root: Path, board, project, toolchain) -> BuildOutput:
        root = Path(root).resolve()
        log = root / "build" / "edgekit-build.log"
        target = str(board.data.get("idf", {}).get("target", board.name))
        idf = toolchain.programs["idf.py"]
        run_logged([[idf, "-C", str(root), "set-target", target], [idf, "-C", str(root), "build"]], root, log,
                   "idf.py build")
        name = project.project_name
        prefix = "riscv32-esp-elf-" if board.arch == "riscv" else f"xtensa-{target}-elf-"
        return BuildOutput(f"build/{name}.elf", sizes_of(shutil.which(prefix + "size"), root / "build" / f"{name}.elf"),
                           str(log.relative_to(root)))
