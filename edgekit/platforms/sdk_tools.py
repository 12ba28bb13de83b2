"""Running the platforms' own build tools (cmake, idf.py, arduino-cli): logged, timed, one line on failure.

edgekit never installs a vendor SDK: when the tools are here, `edgekit build` compiles the project and reads
the real flash and RAM from the ELF; otherwise the platform says in one line what to install and how to build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.processes import run_tied

BUILD_TIMEOUT = 1800  # seconds: a first ESP-IDF build compiles the whole IDF and TFLite Micro


def tflm_tree(path: str | None) -> bool:
    return bool(path) and (Path(path) / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file()


def has_cxx_library(gxx: str) -> bool:
    """Whether the Arm C++ compiler finds its standard headers (Debian ships them in a separate, large package)."""
    try:
        done = subprocess.run([gxx, "-x", "c++", "-E", "-o", os.devnull, "-"], input="#include <vector>\n",
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_logged(commands: list[list[str]], cwd: Path, log_path: Path, what: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        for command in commands:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            try:
                result = run_tied(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT,
                                  scratch_in=cwd)
            except subprocess.TimeoutExpired:
                raise EdgekitError(f"{what} took more than {BUILD_TIMEOUT} s; stopped (log: {log_path})") from None
            if result.returncode != 0:
                tail = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if "error" in line]
                first = tail[0] if tail else f"exit status {result.returncode}"
                raise EdgekitError(f"{what} failed: {first[:200]} (full log: {log_path})")


def sizes_of(size_tool: str | None, firmware: Path) -> dict:
    from edgekit.build_folder import elf_flash_bytes
    from edgekit.platforms.make import read_sizes

    if size_tool:
        return read_sizes(size_tool, firmware)
    return {"flash_bytes": elf_flash_bytes(firmware)}
