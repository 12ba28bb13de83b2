"""The cmake-arm platform: a bare-metal CMake project for real Cortex-M boards (STM32, nRF52...).

Start-up code, the linker script from the board's memory map (boards/*.toml: flash_base, ram_base, sizes), a
polled UART and the DWT cycle counter behind edgekit_platform.h, no vendor HAL. It builds the libraries a
backend declares that it knows (tflite-micro, from TFLM_DIR); a backend without libraries needs only
cmake and arm-none-eabi-gcc.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekit.codegen.common import c_identifier, render
from edgekit.errors import EdgekitError
from edgekit.platforms.base import BuildOutput, Platform, Toolchain, write_text
from edgekit.platforms.sdk_tools import has_cxx_library, run_logged, sizes_of, tflm_tree
from edgekit.platforms.tflm_scaffold import finish, scaffold_context
from edgekit.tflm_kernels import TFLM_GIT_TAG, tflm_target_arch

# External RAM of cmake-arm boards: where it is mapped (the platform must initialise its controller).
_EXT_RAM_BASE = {"STM32F746NG": 0xC0000000}

CMAKE_ARM_STACK_BYTES = 8192
ARM_PACKAGES = "apt-get install cmake gcc-arm-none-eabi libnewlib-arm-none-eabi"


class CmakeArmPlatform(Platform):
    name = "cmake-arm"
    kernels = "cmsis-nn"
    libraries = ("tflite-micro",)
    psram_arena = True

    def model_dir(self, board, graph) -> str:
        return "src"

    def generate(self, graph, board, root: Path, output):
        ctx = scaffold_context(self, graph, board, output, "src")
        flags = [f for f in board.toolchain.get("cflags", []) if f.startswith("-m")]
        ext_ram = None
        if ctx["arena_in_psram"]:
            base = _EXT_RAM_BASE.get(board.mcu)
            if base is None:
                raise EdgekitError(f"the arena does not fit {board.name}'s internal RAM and edgekit does not know "
                                   f"where its external RAM is mapped; expected a smaller model or --arena-bytes")
            ext_ram = {"base": base, "bytes": board.psram_bytes}
        ctx.update(cpu_flags=" ".join(flags), mcu_macro=c_identifier(board.mcu, prefix="mcu"),
                   tflm_git_tag=TFLM_GIT_TAG, tflm_target_arch=tflm_target_arch(board),
                   stack_bytes=CMAKE_ARM_STACK_BYTES, flash_base=int(board.flash.get("flash_base", 0x08000000)),
                   ram_base=int(board.flash.get("ram_base", 0x20000000)), ext_ram=ext_ram)
        written: list[str] = []
        for template, target in [("CMakeLists.txt.j2", "CMakeLists.txt"), ("link.ld.j2", "link.ld"),
                                 ("startup.c.j2", "src/startup.c"),
                                 ("edgekit_platform_cortexm.c.j2", "src/edgekit_platform_cortexm.c"),
                                 ("main.c.j2", "src/main.c")]:
            write_text(root, target, render(f"tflm/cmake-arm/{template}", **ctx), written)
        if "tflite-micro" in ctx["libraries"]:
            write_text(root, "src/debug_log.cc", render("tflm/cmake-arm/debug_log.cc.j2", **ctx), written)
            hint = "cmake -B build -DTFLM_DIR=<tflm tree> && cmake --build build"
        else:
            hint = "cmake -B build && cmake --build build"
        # The ELF; the post-build step writes the .bin and .hex beside it.
        return finish(self, root, ctx, output, "src", written, hint, f"build/{ctx['project_name']}.elf")

    def toolchain(self, board, output=None, env=None) -> Toolchain:
        env = os.environ if env is None else env
        needs_tflm = output is None or "tflite-micro" in output.needs.library_names
        programs = {name: shutil.which(name) for name in ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-g++",
                                                          "arm-none-eabi-size")}
        if not needs_tflm:
            programs.pop("arm-none-eabi-g++")
        absent = [name for name, path in programs.items() if path is None]
        if absent:
            extra = " libstdc++-arm-none-eabi-newlib" if needs_tflm else ""
            return Toolchain(self.name, False, missing=f"{', '.join(absent)} not found: {ARM_PACKAGES}{extra}")
        if not needs_tflm:
            return Toolchain(self.name, True, programs)
        if not has_cxx_library(programs["arm-none-eabi-g++"]):
            return Toolchain(self.name, False, programs,
                             missing="arm-none-eabi-g++ has no C++ standard library (<vector> not found), which "
                                     "TFLite Micro needs: apt-get install libstdc++-arm-none-eabi-newlib (or "
                                     "bash scripts/setup.sh --tflm)")
        if not tflm_tree(env.get("TFLM_DIR")):
            return Toolchain(self.name, False, programs, missing="no TFLite Micro tree: set TFLM_DIR to one made "
                                                                 "by create_tflm_tree.py (see the project's README)")
        return Toolchain(self.name, True, {**programs, "TFLM_DIR": env["TFLM_DIR"]})

    def compile(self, root: Path, board, project, toolchain) -> BuildOutput:
        root = Path(root).resolve()
        log = root / "build" / "edgekit-build.log"
        defines = [f"-DTFLM_DIR={toolchain.programs['TFLM_DIR']}"] if "TFLM_DIR" in toolchain.programs else []
        cmake = toolchain.programs["cmake"]
        run_logged([[cmake, "-S", str(root), "-B", str(root / "build"), *defines],
                    [cmake, "--build", str(root / "build"), "-j", str(os.cpu_count() or 2)]], root, log,
                   "cmake build")
        elf = f"build/{project.project_name}.elf"
        sizes = sizes_of(toolchain.programs["arm-none-eabi-size"], root / elf)
        sizes["sections_checked"] = check_memory_map(root / elf, board)
        return BuildOutput(elf, sizes, str(log.relative_to(root)))


def memory_regions(board) -> dict[str, tuple[int, int]]:
    """The board's memory map (boards/*.toml) as the linker script has it: name -> (base, bytes)."""
    regions = {"flash": (int(board.flash.get("flash_base", 0x08000000)), board.flash_bytes),
               "ram": (int(board.flash.get("ram_base", 0x20000000)), board.ram_bytes)}
    if board.psram_bytes and board.mcu in _EXT_RAM_BASE:
        regions["external RAM"] = (_EXT_RAM_BASE[board.mcu], board.psram_bytes)
    return regions


def check_memory_map(elf: Path, board) -> int:
    """Every allocated section of the ELF inside the board's flash or RAM (loaded data: in RAM, its initial
    values in flash); returns how many were checked, or one line naming the first that is not."""
    from edgekit.build_folder import elf_sections

    regions = memory_regions(board)
    sections = elf_sections(elf)
    for section in sections:
        start, end = section["address"], section["address"] + section["bytes"]
        if not any(base <= start and end <= base + size for base, size in regions.values()):
            raise EdgekitError(f"section {section['name']} of {elf.name} ({section['bytes']:,} bytes at "
                               f"0x{start:08x}) lies outside {board.name}'s flash and RAM "
                               f"({', '.join(f'{n} 0x{b:08x}+{s:,}' for n, (b, s) in regions.items())})")
    return len(sections)
