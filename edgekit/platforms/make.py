"""The Makefile project that the host and qemu platforms share, and its direct compile.

A project folder is self-contained and a person can run `make` in it:

    app/        the protocol server (edgekit_app.c) and the two contract headers
    platform/   the platform's layer: host (stdin/stdout) or bare-metal Cortex-M for QEMU's machines
    model/      the backend (the native backend's model.c, kernels...)
    Makefile

`compile_project` runs the same compiler command from Python (not through make) so that a failure becomes one
line naming the first error, with the whole output kept in build/compile.log. What differs between host and
qemu (the platform layer, the flags, the compiler) is asked of the board's platform (MakePlatform subclasses).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekit.backends.base import BackendOutput
from edgekit.boards import Board, load_board
from edgekit.codegen.common import atomic_output_dir, c_comment, render
from edgekit.errors import EdgekitError
from edgekit.platforms import make_tflm
from edgekit.platforms.base import (APP_FILES, BuildOutput, Platform, PlatformProject, Toolchain, version_text)
from edgekit.processes import run_tied
from edgekit.resources import templates_dir

SOURCE_DIRS = ("app", "platform", "model")
FAMILIES = ("host", "qemu")
COMPILE_TIMEOUT = 600


@dataclass
class Project:
    """A generated firmware project: where it is, for which board, and what the backend reported."""

    path: Path
    board: str
    family: str  # "host" or "qemu"
    files: list[str]  # paths relative to `path`, sorted
    firmware: str  # where compile_project puts the program, relative to `path`
    model: object = None  # what the backend generator returned (NativeModel for the native backend)

    @property
    def arena_bytes(self) -> int | None:
        return getattr(self.model, "arena_bytes", None)


@dataclass
class CompileResult:
    firmware: Path
    sizes: dict  # text, data, bss, flash_bytes, ram_static_bytes (+ stack_bytes reserved on Cortex-M)
    log: Path
    warnings: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


class MakePlatform(Platform):
    """host and qemu: app/, platform/, model/ and a Makefile, compiled with one compiler command."""

    firmware = "build/firmware"
    default_backend = "native"

    def layer(self, board: Board, platform_dir: Path) -> None:
        """Write the serial/timer layer (and start-up code, linker script) into platform/."""
        raise NotImplementedError

    def flags(self, board: Board) -> tuple[list[str], list[str]]:
        """(compile flags, link flags), paths relative to the project folder."""
        raise NotImplementedError

    def find_compiler(self, board: Board) -> tuple[str, str]:
        """(C compiler, size tool), or an EdgekitError saying how to install them."""
        raise NotImplementedError

    def extra_sizes(self, board: Board) -> dict:
        return {}

    def makefile_context(self, board: Board) -> dict:
        return {"host": False, "machine": ""}

    # the Platform interface ------------------------------------------------------------------------------------

    def model_dir(self, board, graph) -> str:
        return "model"

    def generate(self, graph, board, root: Path, output: BackendOutput) -> PlatformProject:
        if make_tflm.needs_library(output):  # C++ sources against TFLite Micro: its Makefile, its clock and log
            files = make_tflm.write_scaffold(self, board, Path(root), output)
            return PlatformProject(self.name, files, make_tflm.BUILD_HINT, self.firmware, backend=output)
        files = write_app_scaffold(board, Path(root))
        # no hand-build hint in the manifest: edgekit compiles these itself whenever the compiler is here
        return PlatformProject(self.name, files, "", "", backend=output)

    compiler_hint = "a C compiler"

    def toolchain(self, board, output=None, env=None) -> Toolchain:
        if make_tflm.needs_library(output):
            return make_tflm.toolchain(self, board, env)
        try:
            compiler, size = self.find_compiler(board)
        except EdgekitError as missing:
            return Toolchain(self.name, False, missing=str(missing))
        return Toolchain(self.name, True, {"cc": compiler, "size": size})

    def compile(self, root: Path, board, project, toolchain) -> BuildOutput:
        if make_tflm.needs_library(project.backend):
            return make_tflm.compile_project(self, root, board, project.backend, toolchain)
        done = compile_project(root, board)
        return BuildOutput(str(Path(done.firmware).resolve().relative_to(Path(root).resolve())), done.sizes,
                           str(done.log.relative_to(root)))


def _board(board) -> Board:
    return board if isinstance(board, Board) else load_board(str(board))


def _platform(board: Board) -> MakePlatform:
    from edgekit.platforms import platform_for

    platform = platform_for(board)
    if not isinstance(platform, MakePlatform):
        raise EdgekitError(f"board {board.name} uses the '{board.project}' project family; the native firmware "
                           f"build supports host and qemu boards ({', '.join(FAMILIES)})")
    return platform


def firmware_name(board: Board) -> str:
    return _platform(board).firmware


def _sources(project_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(project_dir)) for d in SOURCE_DIRS for p in (project_dir / d).glob("*.c"))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _makefile(board: Board, sources: list[str]) -> str:
    platform = _platform(board)
    compile_flags, link_flags = platform.flags(board)
    return render("platform/Makefile.native.j2", board=c_comment(board.name), version=version_text(),
                  cflags=" ".join(compile_flags), ldflags=" ".join(link_flags), sources=sources,
                  firmware=platform.firmware, **platform.makefile_context(board))


def write_app_scaffold(board: Board, staging: Path) -> list[str]:
    """app/, platform/ and the Makefile around the model/ a backend already wrote; returns every file."""
    platform = _platform(board)
    app_dir, platform_dir, model_dir = (staging / d for d in SOURCE_DIRS)
    for folder in (app_dir, platform_dir, model_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        shutil.copyfile(templates_dir() / "app" / name, app_dir / name)
    platform.layer(board, platform_dir)
    sources = _sources(staging)
    if not any(s.startswith("model/") for s in sources):
        raise EdgekitError(f"the backend wrote no C source into {model_dir.name}/; expected the model's .c files")
    write(staging / "Makefile", _makefile(board, sources))
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())


def generate_app_project(board, out_dir, backend: Callable[[Path], object]) -> Project:
    """A project around any backend: `backend(model_dir)` writes the C files implementing edgekit_backend.h.

    The folder appears complete or not at all (written beside it, then moved into place).
    """
    board = _board(board)
    platform = _platform(board)
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir) as staging:
        (staging / "model").mkdir(parents=True, exist_ok=True)
        model = backend(staging / "model")
        files = write_app_scaffold(board, staging)
    return Project(path=out_dir, board=board.name, family=platform.name, files=files, firmware=platform.firmware,
                   model=model)


def generate_native_project(graph, board, out_dir, *, name=None) -> Project:
    """The native backend's model (model/) with the application and the board's platform layer around it.

    The input is preserved across inferences (edgekit_backend.h requires it): the protocol's `infer N W` runs one
    uploaded input N + W times, as MLPerf Tiny's runner expects.
    """
    from edgekit.codegen.native import generate_native_model

    return generate_app_project(board, out_dir, lambda model_dir: generate_native_model(
        graph, model_dir, name=name, preserve_input=True))


# ----------------------------------------------------------------------------------------------------------------
# Compiling


def find_compiler(board) -> tuple[str, str]:
    """(C compiler, size tool) for the board, or an EdgekitError saying how to install them."""
    board = _board(board)
    return _platform(board).find_compiler(board)


def first_problem(log: str) -> str:
    """The line of the compiler output most worth showing: our linker ASSERT, else the first error."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for pattern in (r"edgekit: .*do not fit", r"\berror\b", r"undefined reference", r"overflowed"):
        for line in lines:
            match = re.search(pattern, line)
            if match:
                return line[match.start():] if pattern.startswith("edgekit") else line
    return lines[-1] if lines else "no output"


def _warnings(log: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if "warning:" in line]


def read_sizes(size_tool: str, firmware: Path) -> dict:
    """text/data/bss of an executable, from `size` (Berkeley format)."""
    result = run_tied([size_tool, "-B", str(firmware)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise EdgekitError(f"{Path(size_tool).name} failed on {firmware}: {first_problem(result.stderr)}")
    last = result.stdout.strip().splitlines()[-1].split()
    text, data, bss = (int(v) for v in last[:3])
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_static_bytes": data + bss}


def compile_project(project_dir, board, defines=()) -> CompileResult:
    """Compile and link the project with -O2 -DEK_PROFILE_LAYERS; one-line error and build/compile.log on failure.

    `defines`: extra preprocessor definitions ("NAME=VALUE"), for test builds such as EK_TEST_CORRUPT_LAYER."""
    board = _board(board)
    platform = _platform(board)
    project_dir = Path(project_dir)
    if not (project_dir / "app" / "edgekit_app.c").is_file():
        raise EdgekitError(f"{project_dir} is not a generated project (no app/edgekit_app.c); generate it first")
    compiler, size_tool = platform.find_compiler(board)
    sources = _sources(project_dir)
    compile_flags, link_flags = platform.flags(board)
    build_dir = project_dir / "build"
    build_dir.mkdir(exist_ok=True)
    firmware = project_dir / platform.firmware
    partial = firmware.with_name(f".{firmware.name}.partial")
    command = [compiler, *compile_flags, f'-DEK_VERSION="{version_text()}"', *(f"-D{d}" for d in defines),
               *sources, *link_flags,
               "-o", str(partial.relative_to(project_dir))]
    log_path = build_dir / "compile.log"
    try:
        result = run_tied(command, cwd=project_dir, capture_output=True, text=True, timeout=COMPILE_TIMEOUT,
                          scratch_in=build_dir)
    except subprocess.TimeoutExpired:
        raise EdgekitError(f"compiling {project_dir} took more than {COMPILE_TIMEOUT} s; stopped") from None
    log = result.stdout + result.stderr
    log_path.write_text(" ".join(command) + "\n" + log, encoding="utf-8")
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise EdgekitError(f"compiling for {board.name} failed: {first_problem(log)} (full log: {log_path})")
    os.replace(partial, firmware)
    sizes = read_sizes(size_tool, firmware)
    sizes.update(platform.extra_sizes(board))
    return CompileResult(firmware=firmware, sizes=sizes, log=log_path, warnings=_warnings(log), command=command)


COMMON_FLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-DEK_PROFILE_LAYERS"] + [f"-I{d}" for d in SOURCE_DIRS]

