"""The host platform: the application as a program on this machine, its serial line being stdin/stdout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.platforms.make import COMMON_FLAGS, MakePlatform
from edgekit.resources import templates_dir


class HostPlatform(MakePlatform):
    name = "host"
    libraries = ("tflite-micro",)  # built once into a cache (edgekit.tflm_library, platforms.make_tflm)
    compiles_libraries = True
    kernels = "reference"
    firmware = "build/firmware"
    compiler_hint = "a C compiler (apt-get install gcc)"

    def layer(self, board, platform_dir: Path) -> None:
        shutil.copyfile(templates_dir() / "platform/host/ek_platform_host.c", platform_dir / "ek_platform_host.c")

    def flags(self, board):
        return list(COMMON_FLAGS), ["-lm"]

    def makefile_context(self, board) -> dict:
        return {"host": True, "machine": ""}

    def find_compiler(self, board):
        candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
        for candidate in candidates:
            found = shutil.which(candidate)
            if found:
                break
        else:
            raise EdgekitError(f"no C compiler found (tried {', '.join(candidates)}); install one with: "
                               f"apt-get install gcc")
        size = shutil.which("size")
        if size is None:
            raise EdgekitError("size not found; install it with: apt-get install binutils")
        return found, size
