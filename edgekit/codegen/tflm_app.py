"""The TFLite Micro backend on the host and QEMU boards: the same application and platform layer as the native
build, with TFLite Micro's interpreter behind edgekit_backend.h, linked against a cached libtflm.a.

    app/        the protocol server and the contract headers (templates/app)
    platform/   the host layer or the bare-metal Cortex-M layer for QEMU's machines (as the native build's)
    model/      the TFLite Micro backend: model array, exact op resolver, arena, per-layer profiler,
                tflm_platform.cc (TFLite Micro's log sink and clock)
    Makefile    the same commands as `edgekit build`, given TFLM_DIR and TFLM_LIB

Without a TFLite Micro tree the project is generated and not compiled: the message says how to get a tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.codegen import app as native_app
from edgekit.codegen.common import c_comment, render
from edgekit.codegen.tflm import (ArenaSize, _align16, _context, _render_common, _write, arena_size)
from edgekit.errors import EdgekitError
from edgekit.processes import run_tied
from edgekit.resources import templates_dir
from edgekit.tflm_library import TREE_HINT, TflmTree, build_library

FAMILIES = ("host", "qemu")
CXX_FLAGS = ["-std=c++17", "-O2", "-Wall", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
             "-fno-use-cxa-atexit", "-ffunction-sections", "-fdata-sections", "-DEK_PROFILE_LAYERS"]
COMPILE_TIMEOUT = 600


@dataclass
class TflmAppProject:
    family: str  # "host" or "qemu"
    files: list[str]
    ops: list[dict]
    arena: ArenaSize
    firmware: str  # relative to the project folder, once compiled
    kernels: str | None  # the tree's kernels, None without a tree
    build_hint: str
    extra: dict = field(default_factory=dict)


def project_arena(graph, board, arena_bytes: int | None, arena_margin: float | None) -> ArenaSize:
    """The arena constant: as for real boards on QEMU's 32-bit cores; on the 64-bit host, pointers and
    TfLiteTensor structs are bigger, so the host's own measurement is the base."""
    arena = arena_size(graph, board.project, arena_bytes, arena_margin)
    if board.project != "host" or arena.overridden:
        return arena
    margin = _align16(arena.host_bytes + arena.scratch_bytes) * arena.margin_fraction
    total = _align16(arena.host_bytes + arena.scratch_bytes + int(margin) + arena.margin_bytes)
    return ArenaSize(arena.host_bytes, arena.target_bytes, arena.scratch_bytes, total - arena.host_bytes -
                     arena.scratch_bytes, max(total, arena.bytes), margin_fraction=arena.margin_fraction)


def build_hint(board, tree: TflmTree | None) -> str:
    if tree is None:
        return (f"Generated; set TFLM_DIR to compile (or pass --tflm-dir): a TFLite Micro tree made by "
                f"create_tflm_tree.py; {TREE_HINT}")
    return f"make TFLM_DIR={tree.path} TFLM_LIB=<libtflm.a> (edgekit build compiles and caches the library)"


def write_tflm_app_project(graph, board, root, tree: TflmTree | None, arena_bytes: int | None = None,
                           arena_margin: float | None = None) -> TflmAppProject:
    """Write the project into the existing folder `root` (the caller makes it atomic)."""
    if board.project not in FAMILIES:
        raise EdgekitError(f"board {board.name} builds '{board.project}' projects; this TFLite Micro project is for "
                           f"{', '.join(FAMILIES)} boards")
    root = Path(root)
    arena = project_arena(graph, board, arena_bytes, arena_margin)
    ctx = _context(graph, board, arena, False, board.project)
    written: list[str] = []
    for name in native_app.APP_FILES:
        _write(root, f"app/{name}", (templates_dir() / "app" / name).read_text(encoding="utf-8"), written)
    platform_dir = root / "platform"
    platform_dir.mkdir(parents=True, exist_ok=True)
    native_app._write_platform(board, platform_dir)
    written += [f"platform/{p.name}" for p in platform_dir.iterdir()]
    _render_common(root, ctx, graph, "model", "cc", written)
    _write(root, "model/tflm_platform.cc",
           (templates_dir() / "tflm/app/tflm_platform.cc").read_text(encoding="utf-8"), written)
    _write(root, "Makefile", _makefile(board, root, tree, None), written)
    return TflmAppProject(family=board.project, files=sorted(written), ops=ctx["ops"], arena=arena,
                          firmware=native_app.firmware_name(board), kernels=tree.kernels if tree else None,
                          build_hint=build_hint(board, tree))


def _sources(root: Path) -> tuple[list[str], list[str]]:
    c = sorted(str(p.relative_to(root)) for d in ("app", "platform") for p in (root / d).glob("*.c"))
    cxx = sorted(str(p.relative_to(root)) for p in (root / "model").glob("*.cc"))
    return c, cxx


def _cpu_flags(board) -> list[str]:
    return [] if board.project == "host" else [str(f) for f in board.toolchain.get("cflags", [])]


def _cxx_flags(board, tree: TflmTree) -> list[str]:
    includes = [f"-I{d}" for d in ("app", "platform", "model")] + [f"-I{d}" for d in tree.include_dirs]
    return [*_cpu_flags(board), *CXX_FLAGS, *includes, *(f"-D{d}" for d in tree.defines)]


def _link_flags(board) -> list[str]:
    _, link = native_app._flags(board)
    return [*_cpu_flags(board), *link]


def _makefile(board, root: Path, tree: TflmTree | None, library: Path | None) -> str:
    c_flags, _ = native_app._flags(board)
    c_sources, cxx_sources = _sources(root)
    cxx_flags = [*_cpu_flags(board), *CXX_FLAGS, "-Iapp", "-Iplatform", "-Imodel"]
    includes = "-I$(TFLM_DIR)" + "".join(
        f" -I$(TFLM_DIR)/{d.relative_to(tree.path)}" for d in tree.include_dirs[1:]) if tree else "-I$(TFLM_DIR)"
    defines = " ".join(f"-D{d}" for d in (tree.defines if tree else ["TF_LITE_STATIC_MEMORY", "NDEBUG"]))
    return render("tflm/app/Makefile.j2", board=c_comment(board.name), version=native_app._version(),
                  host=board.project == "host", kernels=tree.kernels if tree else "reference or CMSIS-NN",
                  tflm_dir=str(tree.path) if tree else "<tree from create_tflm_tree.py>",
                  tflm_lib=str(library) if library else "<libtflm.a>", cflags=" ".join(c_flags),
                  cxxflags=" ".join(cxx_flags), tflm_includes=includes, tflm_defines=defines,
                  ldflags=" ".join(_link_flags(board)), c_sources=c_sources, cxx_sources=cxx_sources,
                  firmware=native_app.firmware_name(board), machine=c_comment(board.emulator.get("machine", "")))


def _tools(board) -> dict:
    """C and C++ compilers, archiver and size tool for the board, or one line saying what to install."""
    if board.project == "host":
        names = {"cc": [os.environ.get("CC") or "cc", "gcc"], "cxx": [os.environ.get("CXX") or "c++", "g++"],
                 "ar": ["ar"], "size": ["size"]}
        hint = "apt-get install g++ binutils"
    else:
        names = {"cc": ["arm-none-eabi-gcc"], "cxx": ["arm-none-eabi-g++"], "ar": ["arm-none-eabi-ar"],
                 "size": ["arm-none-eabi-size"]}
        hint = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"
    tools = {}
    for role, candidates in names.items():
        found = next((shutil.which(c) for c in candidates if shutil.which(c)), None)
        if found is None:
            raise EdgekitError(f"{candidates[0]} not found; install it with: {hint}")
        tools[role] = found
    if board.project != "host":
        from edgekit.toolchains import _has_cxx_library

        if not _has_cxx_library(tools["cxx"]):
            raise EdgekitError("arm-none-eabi-g++ has no C++ standard library (<vector> not found), which TFLite "
                               "Micro needs: apt-get install libstdc++-arm-none-eabi-newlib (or bash "
                               "scripts/setup.sh --tflm)")
    return tools


def compile_tflm_app_project(root, board, tree: TflmTree, ops: list[str] | None) -> dict:
    """libtflm.a for the model's operators from the cache (compiled on a first use), then the project's own
    sources, linked against it. Should the link miss a symbol, the whole tree is compiled and the link retried.

    Returns {"firmware", "sizes", "log", "library": {... "cache_hit" ...}}; one-line error on failure."""
    root = Path(root)
    tools = _tools(board)

    def library_for(wanted):
        return build_library(tree, cc=tools["cc"], cxx=tools["cxx"], ar=tools["ar"], cpu_flags=_cpu_flags(board),
                             ops=wanted)

    library = library_for(ops)
    c_flags, _ = native_app._flags(board)
    c_sources, cxx_sources = _sources(root)
    version = f'-DEK_VERSION="{native_app._version()}"'
    commands, objects = [], []
    for source in c_sources + cxx_sources:
        obj = f"build/{source[:source.rfind('.')]}.o"
        (root / obj).parent.mkdir(parents=True, exist_ok=True)
        compiler, flags = (tools["cc"], [*c_flags, version]) if source.endswith(".c") else (
            tools["cxx"], _cxx_flags(board, tree))
        commands.append([compiler, *flags, "-c", source, "-o", obj])
        objects.append(obj)
    firmware = root / native_app.firmware_name(board)
    partial = firmware.with_name(f".{firmware.name}.partial")
    log_path = root / "build" / "compile.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def link_command(lib):
        return [tools["cxx"], *objects, str(lib.path), *_link_flags(board), "-o", str(partial.relative_to(root))]

    with open(log_path, "w", encoding="utf-8") as log:
        for command in commands:
            _run(command, root, board, log, log_path, partial)
        done = _run(link_command(library), root, board, log, log_path, partial, check=ops is None)
        if done.returncode != 0:  # a helper the selection missed: the whole library
            library = library_for(None)
            _run(link_command(library), root, board, log, log_path, partial)
    (root / "Makefile").write_text(_makefile(board, root, tree, library.path), encoding="utf-8", newline="\n")
    os.replace(partial, firmware)
    sizes = native_app.read_sizes(tools["size"], firmware)
    if board.project != "host":
        sizes["stack_bytes"] = native_app._stack_bytes(board)
    return {"firmware": native_app.firmware_name(board), "sizes": sizes,
            "log": str(log_path.relative_to(root)), "library": library.to_dict()}


def _run(command, root: Path, board, log, log_path: Path, partial: Path, check: bool = True):
    try:
        done = run_tied(command, cwd=root, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, scratch_in=root)
    except subprocess.TimeoutExpired:
        raise EdgekitError(f"compiling {root} took more than {COMPILE_TIMEOUT} s; stopped") from None
    log.write(" ".join(command) + "\n" + done.stdout + done.stderr)
    log.flush()
    if done.returncode != 0 and check:
        partial.unlink(missing_ok=True)
        raise EdgekitError(f"compiling for {board.name} failed: "
                           f"{native_app._first_problem(done.stdout + done.stderr)} (full log: {log_path})")
    return done
