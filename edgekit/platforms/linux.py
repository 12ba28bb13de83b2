"""The Linux platform (aarch64 boards): the host's program, cross-compiled, plus the model as a shared library.

The project is the host platform's (app/, platform/ with the stdin/stdout layer, model/, Makefile), compiled with
the board's cross compiler (`[toolchain] prefix`, e.g. aarch64-linux-gnu-) and linked statically so the one file
runs under qemu-aarch64 and on any aarch64 distribution. Next to it, `build/libedgekit_model.so`: the model alone
behind the plain C API of app/edgekit_backend.h (only the `ek_model_*` symbols exported), for an application that
links the model instead of talking the protocol.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.platforms.make import COMMON_FLAGS, MakePlatform, _sources, first_problem
from edgekit.processes import run_tied
from edgekit.resources import templates_dir

SHARED_LIBRARY = "build/libedgekit_model.so"
EXPORTS = "platform/libedgekit_model.map"
# the shared library carries no protocol layer: no per-layer ticks (they need ek_platform_ticks)
LIBRARY_FLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fPIC", "-Iapp", "-Imodel"]


class LinuxPlatform(MakePlatform):
    name = "linux"
    libraries = ()  # TFLite Micro is not built for Linux boards; LiteRT is what runs .tflite files there
    kernels = "reference"
    firmware = "build/firmware"
    default_backend = "native"

    def layer(self, board, platform_dir: Path) -> None:
        shutil.copyfile(templates_dir() / "platform/host/ek_platform_host.c", platform_dir / "ek_platform_host.c")
        (platform_dir / "libedgekit_model.map").write_text(
            "/* libedgekit_model.so exports the model's C API (app/edgekit_backend.h) and nothing else */\n"
            "{\n  global: ek_model_*;\n  local: *;\n};\n", encoding="utf-8")

    def flags(self, board):
        toolchain = board.toolchain
        return [*COMMON_FLAGS, *toolchain.get("cflags", [])], [*toolchain.get("ldflags", []), "-lm"]

    def makefile_context(self, board) -> dict:
        return {"host": True, "machine": "", "cross": str(board.toolchain.get("prefix", "")),
                "emulator": str(board.data.get("qemu_user", {}).get("program", "")), "library": SHARED_LIBRARY,
                "exports": EXPORTS, "library_flags": " ".join([*LIBRARY_FLAGS, *board.toolchain.get("cflags", [])])}

    def compiler_names(self, board) -> tuple[str, str]:
        prefix = str(board.toolchain.get("prefix", ""))
        return f"{prefix}gcc", f"{prefix}size"

    def find_compiler(self, board):
        cc, size = self.compiler_names(board)
        found_cc, found_size = shutil.which(cc), shutil.which(size)
        if not found_cc or not found_size:
            missing = cc if not found_cc else size
            raise EdgekitError(f"{missing} not found (the {board.name} cross compiler); install it with: "
                               f"{board.toolchain.get('install', 'your distribution packages')}")
        return found_cc, found_size

    def compile(self, root: Path, board, project, toolchain):
        done = super().compile(root, board, project, toolchain)
        done.sizes["shared_library_bytes"] = compile_shared_library(Path(root), toolchain.programs["cc"],
                                                                    board.toolchain.get("cflags", []))
        return done


def compile_shared_library(root: Path, compiler: str, cflags=(), output: str = SHARED_LIBRARY) -> int:
    """model/*.c into a shared library exporting only ek_model_*; returns its size in bytes."""
    sources = [s for s in _sources(root) if s.startswith("model/")]
    target = root / output
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [compiler, *LIBRARY_FLAGS, *cflags, "-shared", f"-Wl,--version-script={EXPORTS}", *sources, "-lm",
               "-o", output]
    try:
        result = run_tied(command, cwd=root, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise EdgekitError(f"compiling {output} took more than 600 s; stopped") from None
    log = root / "build" / f"{Path(output).stem}.log"
    log.write_text(" ".join(command) + "\n" + result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        raise EdgekitError(f"compiling {output} failed: {first_problem(result.stdout + result.stderr)} "
                           f"(full log: {log})")
    return target.stat().st_size
