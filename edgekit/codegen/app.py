"""The device application and the platform layers around a generated model, and the firmware build.

A project folder is self-contained and a person can run `make` in it:

    app/        the protocol server (edgekit_app.c) and the two contract headers
    platform/   the board family's layer: host (stdin/stdout) or bare-metal Cortex-M for QEMU's machines
    model/      the backend (the native backend's model.c, kernels...)
    Makefile

`compile_project` runs the same compiler command from Python (not through make) so that a failure becomes one
line naming the first error, with the whole output kept in build/compile.log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekit import __version__
from edgekit.boards import Board, load_board
from edgekit.codegen.common import atomic_output_dir, c_comment, c_string, render
from edgekit.errors import EdgekitError
from edgekit.processes import run_tied
from edgekit.resources import templates_dir

ARM_GCC = "arm-none-eabi-gcc"
ARM_SIZE = "arm-none-eabi-size"
ARM_INSTALL_HINT = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
DEFAULT_STACK_BYTES = 16 * 1024
BAUD = 115_200
SOURCE_DIRS = ("app", "platform", "model")
FAMILIES = ("host", "qemu")
COMPILE_TIMEOUT = 600

APP_FILES = ("edgekit_app.c", "edgekit_app.h", "edgekit_backend.h", "edgekit_platform.h")


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


def _board(board) -> Board:
    return board if isinstance(board, Board) else load_board(str(board))


def _family(board: Board) -> str:
    if board.project not in FAMILIES:
        raise EdgekitError(f"board {board.name} uses the '{board.project}' project family; the native firmware "
                           f"build supports host and qemu boards ({', '.join(FAMILIES)})")
    return board.project


def firmware_name(board: Board) -> str:
    return "build/firmware" if _family(board) == "host" else "build/firmware.elf"


def _stack_bytes(board: Board) -> int:
    stack = int(board.data.get("stack_bytes", board.emulator.get("stack_bytes", DEFAULT_STACK_BYTES)))
    return (stack + 7) // 8 * 8


def _linker_text(text: str) -> str:
    """Text safe inside a linker-script string: no quotes, no backslashes, printable ASCII."""
    return re.sub(r"[^0-9A-Za-z _.,:+()\-]", "_", str(text))


def _cortex_m_context(board: Board) -> dict:
    emulator = board.emulator
    if emulator.get("uart") != "cmsdk":
        raise EdgekitError(f"board {board.name} has uart '{emulator.get('uart')}'; the Cortex-M platform drives "
                           f"the CMSDK APB UART (uart = \"cmsdk\" in its [emulator] table)")
    for key in ("code_base", "code_bytes", "ram_base", "ram_bytes", "uart_base", "uart_rx_irq", "systick_hz"):
        if not isinstance(emulator.get(key), int):
            raise EdgekitError(f"board {board.name} lacks the integer [emulator] key '{key}'; see boards/README.md")
    stack = _stack_bytes(board)
    rx_irq = emulator["uart_rx_irq"]
    name = _linker_text(board.name)
    return dict(
        board_name=c_string(board.name),
        board_comment=c_comment(f"{board.name}, {board.description}"),
        board_file=c_comment(f"{board.name}.toml"),
        code_base=emulator["code_base"],
        code_region_bytes=max(emulator["code_bytes"], board.flash_bytes),
        ram_base=emulator["ram_base"],
        ram_region_bytes=max(emulator["ram_bytes"], board.ram_bytes),
        flash_bytes=board.flash_bytes,
        ram_bytes=board.ram_bytes,
        stack_bytes=stack,
        uart_base=emulator["uart_base"],
        uart_rx_irq=rx_irq,
        uart_bauddiv=max(16, emulator["systick_hz"] // BAUD),
        systick_hz=emulator["systick_hz"],
        num_irqs=max(32, (rx_irq + 8) // 8 * 8),
        ram_message=f"edgekit: data + bss + {stack} bytes of stack do not fit the {board.ram_bytes} bytes of RAM "
                    f"of board {name}",
        flash_message=f"edgekit: code + constants + data do not fit the {board.flash_bytes} bytes of flash of "
                      f"board {name}",
    )


def _version() -> str:
    return re.sub(r"[^0-9A-Za-z.+\-]", "_", __version__)


def _flags(board: Board) -> tuple[list[str], list[str]]:
    """(compile flags, link flags) for the board, paths relative to the project folder."""
    common = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-DEK_PROFILE_LAYERS"]
    common += [f"-I{d}" for d in SOURCE_DIRS]
    if _family(board) == "host":
        return common, ["-lm"]
    cpu = [str(flag) for flag in board.toolchain.get("cflags", [])]
    compile_flags = cpu + common + ["-ffunction-sections", "-fdata-sections", "-fno-common"]
    link_flags = ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Tplatform/link.ld",
                  "-Wl,--gc-sections", "-Wl,-Map=build/firmware.map", "-lm"]
    return compile_flags, link_flags


def _sources(project_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(project_dir)) for d in SOURCE_DIRS for p in (project_dir / d).glob("*.c"))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _write_platform(board: Board, platform_dir: Path) -> None:
    if _family(board) == "host":
        shutil.copyfile(templates_dir() / "platform/host/ek_platform_host.c", platform_dir / "ek_platform_host.c")
        return
    context = _cortex_m_context(board)
    source = templates_dir() / "platform/cortex-m"
    shutil.copyfile(source / "ek_cortex_m.h", platform_dir / "ek_cortex_m.h")
    shutil.copyfile(source / "ek_platform_cmsdk.c", platform_dir / "ek_platform_cmsdk.c")
    _write(platform_dir / "ek_board.h", render("platform/cortex-m/ek_board.h.j2", **context))
    _write(platform_dir / "startup.c", render("platform/cortex-m/startup.c.j2", **context))
    _write(platform_dir / "link.ld", render("platform/cortex-m/link.ld.j2", **context))


def _makefile(board: Board, sources: list[str]) -> str:
    compile_flags, link_flags = _flags(board)
    host = _family(board) == "host"
    return render(
        "platform/Makefile.native.j2",
        board=c_comment(board.name),
        version=_version(),
        host=host,
        cflags=" ".join(compile_flags),
        ldflags=" ".join(link_flags),
        sources=sources,
        firmware=firmware_name(board),
        machine=c_comment(board.emulator.get("machine", "")),
    )


def generate_app_project(board, out_dir, backend: Callable[[Path], object]) -> Project:
    """A project around any backend: `backend(model_dir)` writes the C files implementing edgekit_backend.h.

    The folder appears complete or not at all (written beside it, then moved into place).
    """
    board = _board(board)
    family = _family(board)
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir) as staging:
        app_dir, platform_dir, model_dir = (staging / d for d in SOURCE_DIRS)
        for folder in (app_dir, platform_dir, model_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for name in APP_FILES:
            shutil.copyfile(templates_dir() / "app" / name, app_dir / name)
        _write_platform(board, platform_dir)
        model = backend(model_dir)
        sources = _sources(staging)
        if not any(s.startswith("model/") for s in sources):
            raise EdgekitError(f"the backend wrote no C source into {model_dir.name}/; expected the model's .c files")
        _write(staging / "Makefile", _makefile(board, sources))
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    return Project(path=out_dir, board=board.name, family=family, files=files, firmware=firmware_name(board),
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
    if _family(board) == "host":
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
    gcc = shutil.which(ARM_GCC)
    if gcc is None:
        raise EdgekitError(f"{ARM_GCC} not found; install it with: {ARM_INSTALL_HINT}")
    size = shutil.which(ARM_SIZE)
    if size is None:
        raise EdgekitError(f"{ARM_SIZE} not found; install it with: {ARM_INSTALL_HINT}")
    return gcc, size


def _first_problem(log: str) -> str:
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
        raise EdgekitError(f"{Path(size_tool).name} failed on {firmware}: {_first_problem(result.stderr)}")
    last = result.stdout.strip().splitlines()[-1].split()
    text, data, bss = (int(v) for v in last[:3])
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_static_bytes": data + bss}


def compile_project(project_dir, board) -> CompileResult:
    """Compile and link the project with -O2 -DEK_PROFILE_LAYERS; one-line error and build/compile.log on failure."""
    board = _board(board)
    project_dir = Path(project_dir)
    if not (project_dir / "app" / "edgekit_app.c").is_file():
        raise EdgekitError(f"{project_dir} is not a generated project (no app/edgekit_app.c); generate it first")
    compiler, size_tool = find_compiler(board)
    sources = _sources(project_dir)
    compile_flags, link_flags = _flags(board)
    build_dir = project_dir / "build"
    build_dir.mkdir(exist_ok=True)
    firmware = project_dir / firmware_name(board)
    partial = firmware.with_name(f".{firmware.name}.partial")
    command = [compiler, *compile_flags, f'-DEK_VERSION="{_version()}"', *sources, *link_flags,
               "-o", str(partial.relative_to(project_dir))]
    log_path = build_dir / "compile.log"
    try:
        result = run_tied(command, cwd=project_dir, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise EdgekitError(f"compiling {project_dir} took more than {COMPILE_TIMEOUT} s; stopped") from None
    log = result.stdout + result.stderr
    log_path.write_text(" ".join(command) + "\n" + log, encoding="utf-8")
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise EdgekitError(f"compiling for {board.name} failed: {_first_problem(log)} (full log: {log_path})")
    os.replace(partial, firmware)
    sizes = read_sizes(size_tool, firmware)
    if _family(board) != "host":
        sizes["stack_bytes"] = _stack_bytes(board)
    return CompileResult(firmware=firmware, sizes=sizes, log=log_path, warnings=_warnings(log), command=command)

