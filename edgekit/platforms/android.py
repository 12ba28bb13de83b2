"""The Android platform (arm64-v8a phones): the Linux platform's native program and shared library, compiled with
the NDK's clang when ANDROID_NDK_HOME names an NDK; the LiteRT projects (edgekit.codegen.litert) come with it.

Without an NDK the project is still generated and the build says, in one line, what to set; the Android app
itself (Gradle) is never built here: there is no Android SDK on the registries edgekit installs from.
"""

from __future__ import annotations

import os
import platform as host
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.platforms.linux import LinuxPlatform


class AndroidPlatform(LinuxPlatform):
    name = "android"

    def makefile_context(self, board) -> dict:
        context = super().makefile_context(board)
        cc, size = self.compiler_names(board)
        return {**context, "cross": "", "emulator": "", "cc": cc, "size_tool": size}

    def compiler_names(self, board) -> tuple[str, str]:
        toolchain = board.toolchain
        return f"{toolchain.get('ndk_triple', 'aarch64-linux-android')}{int(toolchain.get('api', 24))}-clang", \
            "llvm-size"

    def find_compiler(self, board):
        ndk = os.environ.get("ANDROID_NDK_HOME") or os.environ.get("ANDROID_NDK_ROOT")
        install = board.toolchain.get("install", "an Android NDK: set ANDROID_NDK_HOME to its folder")
        if not ndk:
            raise EdgekitError(f"ANDROID_NDK_HOME is not set, so the native program and library for {board.name} "
                               f"are generated, not compiled; needs {install}")
        cc_name, size_name = self.compiler_names(board)
        bin_dir = Path(ndk) / "toolchains" / "llvm" / "prebuilt" / f"{host.system().lower()}-x86_64" / "bin"
        cc, size = bin_dir / cc_name, bin_dir / size_name
        if not cc.is_file() or not size.is_file():
            raise EdgekitError(f"ANDROID_NDK_HOME={ndk} has no {bin_dir / cc_name}; expected an Android NDK "
                               "(r25 or later)")
        return str(cc), str(size)
