"""Former home of the board families' toolchain probes and builds, now each platform's `toolchain()` and
`compile()` (edgekit/platforms/); kept for the callers that knew these names."""

from __future__ import annotations

from edgekit.platforms.base import BuildOutput, Toolchain  # noqa: F401
from edgekit.platforms.sdk_tools import BUILD_TIMEOUT, has_cxx_library, tflm_tree  # noqa: F401

_has_cxx_library = has_cxx_library
_tflm_tree = tflm_tree


def detect(family: str, env: dict | None = None) -> Toolchain:
    """What this machine has for building a TFLite Micro `family` project (esp-idf, cmake-arm, arduino,
    pico-sdk)."""
    from edgekit.platforms import PLATFORMS, get_platform

    if family not in PLATFORMS:
        return Toolchain(family, False, missing=f"no known toolchain for '{family}' projects")
    platform = get_platform(family)
    return platform.toolchain(None, None, env)


def compile_tflm_project(project_dir, board, project, toolchain: Toolchain) -> BuildOutput:
    from edgekit.platforms import platform_for

    return platform_for(board).compile(project_dir, board, project, toolchain)
