"""Finding and running the board families' own build tools for generated TFLite Micro projects.

edgekit never installs a vendor SDK: when `idf.py`, `arduino-cli`, or cmake + arm-none-eabi-gcc with a TFLite
Micro tree (TFLM_DIR) / the Pico SDK are present, `edgekit build` compiles the project and reads the real flash
and RAM from the ELF; otherwise it says in one line what to install and how to build by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.processes import run_tied

BUILD_TIMEOUT = 1800  # seconds: a first ESP-IDF build compiles the whole IDF and TFLite Micro


@dataclass
class Toolchain:
    family: str
    found: bool
    programs: dict = field(default_factory=dict)  # name -> path (or folder for SDK trees)
    missing: str = ""  # one line: what is missing and how to get it


def _tflm_tree(path: str | None) -> bool:
    return bool(path) and (Path(path) / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file()


def detect(family: str, env: dict | None = None) -> Toolchain:
    """What this machine has for building a `family` project (esp-idf, cmake-arm, arduino, pico-sdk)."""
    env = os.environ if env is None else env
    if family == "esp-idf":
        idf = shutil.which("idf.py")
        if idf is None:
            return Toolchain(family, False, missing="idf.py not found: install ESP-IDF 5.x and run "
                                                    ". $IDF_PATH/export.sh")
        return Toolchain(family, True, {"idf.py": idf})
    if family == "arduino":
        cli = shutil.which("arduino-cli")
        if cli is None:
            return Toolchain(family, False, missing="arduino-cli not found: install it and the board's core")
        return Toolchain(family, True, {"arduino-cli": cli})
    if family in ("cmake-arm", "pico-sdk"):
        programs = {name: shutil.which(name) for name in ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-g++",
                                                          "arm-none-eabi-size")}
        absent = [name for name, path in programs.items() if path is None]
        if absent:
            return Toolchain(family, False, missing=f"{', '.join(absent)} not found: apt-get install cmake "
                                                    f"gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                                    f"libstdc++-arm-none-eabi-newlib")
        if not _has_cxx_library(programs["arm-none-eabi-g++"]):
            return Toolchain(family, False, programs,
                             missing="arm-none-eabi-g++ has no C++ standard library (<vector> not found), which "
                                     "TFLite Micro needs: apt-get install libstdc++-arm-none-eabi-newlib (or "
                                     "bash scripts/setup.sh --tflm)")
        if family == "cmake-arm":
            if not _tflm_tree(env.get("TFLM_DIR")):
                return Toolchain(family, False, programs, missing="no TFLite Micro tree: set TFLM_DIR to one made "
                                                                  "by create_tflm_tree.py (see the project's README)")
            return Toolchain(family, True, {**programs, "TFLM_DIR": env["TFLM_DIR"]})
        sdk, tflmicro = env.get("PICO_SDK_PATH"), env.get("PICO_TFLMICRO_PATH")
        if not sdk or not (Path(sdk) / "pico_sdk_init.cmake").is_file():
            return Toolchain(family, False, programs, missing="no Pico SDK: set PICO_SDK_PATH")
        if not tflmicro or not (Path(tflmicro) / "CMakeLists.txt").is_file():
            return Toolchain(family, False, programs, missing="no pico-tflmicro: set PICO_TFLMICRO_PATH")
        return Toolchain(family, True, {**programs, "PICO_SDK_PATH": sdk, "PICO_TFLMICRO_PATH": tflmicro})
    return Toolchain(family, False, missing=f"no known toolchain for '{family}' projects")


def _has_cxx_library(gxx: str) -> bool:
    """Whether the Arm C++ compiler finds its standard headers (Debian ships them in a separate, large package)."""
    try:
        done = subprocess.run([gxx, "-x", "c++", "-E", "-o", os.devnull, "-"], input="#include <vector>\n",
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@dataclass
class BuildOutput:
    firmware: str  # relative to the project folder
    sizes: dict
    log: str  # relative path of the build log


def _run(commands: list[list[str]], cwd: Path, log_path: Path, what: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        for command in commands:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            try:
                result = run_tied(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise EdgekitError(f"{what} took more than {BUILD_TIMEOUT} s; stopped (log: {log_path})") from None
            if result.returncode != 0:
                tail = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if "error" in line]
                first = tail[0] if tail else f"exit status {result.returncode}"
                raise EdgekitError(f"{what} failed: {first[:200]} (full log: {log_path})")


def _sizes(size_tool: str | None, firmware: Path) -> dict:
    from edgekit.codegen.app import read_sizes
    from edgekit.flash import elf_flash_bytes

    if size_tool:
        return read_sizes(size_tool, firmware)
    return {"flash_bytes": elf_flash_bytes(firmware)}


def compile_tflm_project(project_dir, board, project, toolchain: Toolchain) -> BuildOutput:
    """Build a generated TFLite Micro project with the family's tools; firmware path and sizes from the ELF."""
    root = Path(project_dir).resolve()
    name = project.project_name
    log = root / "build" / "edgekit-build.log"
    family = project.family
    if family == "esp-idf":
        target = str(board.data.get("idf", {}).get("target", board.name))
        idf = toolchain.programs["idf.py"]
        _run([[idf, "-C", str(root), "set-target", target], [idf, "-C", str(root), "build"]], root, log,
             "idf.py build")
        firmware = root / "build" / f"{name}.elf"
        prefix = "riscv32-esp-elf-" if board.arch == "riscv" else f"xtensa-{target}-elf-"
        return BuildOutput(f"build/{name}.elf", _sizes(shutil.which(prefix + "size"), firmware),
                           str(log.relative_to(root)))
    if family == "arduino":
        from edgekit.codegen.tflm import arduino_compile_command

        cli = toolchain.programs["arduino-cli"]
        _run([arduino_compile_command(board, str(root / name), cli, str(root / "build"))], root, log,
             "arduino-cli compile")
        firmware = root / "build" / f"{name}.ino.elf"
        return BuildOutput(f"build/{name}.ino.elf", _sizes(shutil.which("arm-none-eabi-size"), firmware),
                           str(log.relative_to(root)))
    if family in ("cmake-arm", "pico-sdk"):
        defines = ([f"-DTFLM_DIR={toolchain.programs['TFLM_DIR']}"] if family == "cmake-arm" else
                   [f"-DPICO_SDK_PATH={toolchain.programs['PICO_SDK_PATH']}",
                    f"-DPICO_TFLMICRO_PATH={toolchain.programs['PICO_TFLMICRO_PATH']}"])
        cmake = toolchain.programs["cmake"]
        _run([[cmake, "-S", str(root), "-B", str(root / "build"), *defines],
              [cmake, "--build", str(root / "build"), "-j", str(os.cpu_count() or 2)]], root, log, "cmake build")
        elf = f"{name}.elf" if family == "cmake-arm" else f"{name}.elf"
        firmware = root / "build" / elf
        return BuildOutput(f"build/{elf}", _sizes(toolchain.programs["arm-none-eabi-size"], firmware),
                           str(log.relative_to(root)))
    raise EdgekitError(f"no toolchain for '{family}' projects")
