"""Former home of the TFLite Micro project generator. The model side is now edgekit.backends.tflm, each board
family's scaffold edgekit.platforms.<family>; these names are kept for the callers that knew them here."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekit.backends.tflm import (ARENA_MARGIN_BYTES, ARENA_MARGIN_FRACTION, CUSTOM_RESOLVER_METHODS,  # noqa: F401
                                   OP_RESOLVER_METHODS, ArenaSize, resolver_ops)
from edgekit.backends.tflm import arena_size as _arena_size
from edgekit.codegen.common import atomic_output_dir
from edgekit.errors import EdgekitError
from edgekit.platforms.arduino import arduino_compile_command  # noqa: F401
from edgekit.tflm_kernels import TFLM_GIT_TAG, tflm_target_arch  # noqa: F401
from edgekit.tflm_kernels import kernel_scratch_bytes as _kernel_scratch_bytes

FAMILIES = ("esp-idf", "cmake-arm", "arduino", "pico-sdk")


def _kernels(family: str) -> str:
    from edgekit.platforms import get_platform

    return get_platform(family).kernels


def kernel_scratch_bytes(graph, family: str) -> int:
    return _kernel_scratch_bytes(graph, _kernels(family))


def arena_size(graph, family: str, arena_bytes: int | None = None, margin_fraction: float | None = None) -> ArenaSize:
    return _arena_size(graph, _kernels(family), arena_bytes, margin_fraction)


@dataclass
class TflmProject:
    family: str
    files: list[str]  # relative paths, sorted
    ops: list[dict]  # [{"op": "CONV_2D", "method": "AddConv2D"}], in resolver order
    arena: ArenaSize
    arena_in_psram: bool
    project_name: str
    build_hint: str  # one line: how to build by hand
    expected_firmware: str = ""  # where that hand build puts the image, relative to the project folder
    extra: dict = field(default_factory=dict)  # e.g. {"flasher_args": "build/flasher_args.json"} for ESP-IDF


def write_tflm_project(graph, board, root, arena_bytes: int | None = None,
                       internal_ram_budget: int | None = None, arena_margin: float | None = None) -> TflmProject:
    """Render the project into an existing folder `root` (the caller makes it atomic)."""
    from edgekit.project import write_project

    if board.project not in FAMILIES:
        raise EdgekitError(f"board {board.name} builds '{board.project}' projects; the TFLite Micro backend "
                           f"generates {', '.join(FAMILIES)} projects")
    project = write_project(graph, board, "tflm", root, ram_budget=internal_ram_budget, arena_bytes=arena_bytes,
                            arena_margin=arena_margin)
    model = project.backend.model
    return TflmProject(family=project.family, files=project.files, ops=model.ops, arena=model.arena,
                       arena_in_psram=model.arena_in_psram, project_name=project.project_name,
                       build_hint=project.build_hint, expected_firmware=project.expected_firmware,
                       extra=project.extra)


def generate_tflm_project(graph, board, out_dir, arena_bytes: int | None = None) -> TflmProject:
    """Generate the TFLite Micro project for `board` in `out_dir`, atomically (all or nothing)."""
    with atomic_output_dir(out_dir) as staging:
        project = write_tflm_project(graph, board, staging, arena_bytes)
    return project
