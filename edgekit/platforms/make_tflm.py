"""The host and qemu platforms' build of the tflite-micro library a backend declares (the TFLite Micro backend).

The project keeps the native build's layout, with C++ sources in model/ and a Makefile that links a static
TFLite Micro library:

    app/        the protocol server and the contract headers (templates/app)
    platform/   the host layer or the bare-metal Cortex-M layer for QEMU's machines (as the native build's)
    model/      what the backend wrote (model array, exact op resolver, arena, per-layer profiler) and
                tflm_platform.cc: TFLite Micro's log sink and clock, which are the platform's
    Makefile    the same commands as `edgekit build`, given TFLM_DIR and TFLM_LIB

The library is compiled from the tree in TFLM_DIR into a cache (edgekit.tflm_library) for the board's CPU flags,
only what the model's operators need. Without a tree the project is generated and not compiled: the toolchain
probe says how to get one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgekit.codegen.common import c_comment, render
from edgekit.errors import EdgekitError
from edgekit.platforms.base import APP_FILES, BuildOutput, Toolchain, version_text
from edgekit.processes import run_tied
from edgekit.resources import templates_dir
from edgekit.tflm_library import TREE_HINT, TflmTree, build_library, find_tree

LIBRARY = "tflite-micro"
CXX_FLAGS = ["-std=c++17", "-O2", "-Wall", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
             "-fno-use-cxa-atexit", "-ffunction-sections", "-fdata-sections", "-DEK_PROFILE_LAYERS"]
COMPILE_TIMEOUT = 600
NO_TREE = f"Generated; set TFLM_DIR to compile (or pass --tflm-dir): a TFLite Micro tree made by create_tflm_tree.py; {TREE_HINT}"
BUILD_HINT = "make TFLM_DIR=<tree> TFLM_LIB=<libtflm.a> (edgekit build with TFLM_DIR set compiles and caches the library)"


def needs_library(output) -> bool:
    return output is not None and LIBRARY in output.needs.library_names


def write_scaffold(platform, board, root: Path, output) -> list[str]:
    """app/, platform/, model/tflm_platform.cc and the Makefile around the backend's model/; returns every file."""
    root = Path(root)
    for name in APP_FILES:
        (root / "app").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(templates_dir() / "app" / name, root / "app" / name)
    (root / "platform").mkdir(parents=True, exist_ok=True)
    platform.layer(board, root / "platform")
    shutil.copyfile(templates_dir() / "tflm/app/tflm_platform.cc", root / "model" / "tflm_platform.cc")
    _write_makefile(platform, board, root, None, None)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _sources(root: Path) -> tuple[list[str], list[str]]:
    c = sorted(str(p.relative_to(root)) for d in ("app", "platform") for p in (root / d).glob("*.c"))
    cxx = sorted(str(p.relative_to(root)) for p in (root / "model").glob("*.cc"))
    return c, cxx


def _cpu_flags(board) -> list[str]:
    return [] if board.arch == "host" else [str(f) for f in board.toolchain.get("cflags", [])]


def _cxx_flags(board, tree: TflmTree) -> list[str]:
    includes = [f"-I{d}" for d in ("app", "platform", "model")] + [f"-I{d}" for d in tree.include_dirs]
    return [*_cpu_flags(board), *CXX_FLAGS, *includes, *(f"-D{d}" for d in tree.defines)]


def _link_flags(platform, board) -> list[str]:
    _, link = platform.flags(board)
    return [*_cpu_flags(board), *link]


def _write_makefile(platform, board, root: Path, tree: TflmTree | None, library: Path | None) -> None:
    c_flags, _ = platform.flags(board)
    c_sources, cxx_sources = _sources(root)
    cxx_flags = [*_cpu_flags(board), *CXX_FLAGS, "-Iapp", "-Iplatform", "-Imodel"]
    includes = "-I$(TFLM_DIR)" + "".join(
        f" -I$(TFLM_DIR)/{d.relative_to(tree.path)}" for d in tree.include_dirs[1:]) if tree else "-I$(TFLM_DIR)"
    defines = " ".join(f"-D{d}" for d in (tree.defines if tree else ["TF_LITE_STATIC_MEMORY", "NDEBUG"]))
    text = render("tflm/app/Makefile.j2", board=c_comment(board.name), version=version_text(),
                  host=board.arch == "host", kernels=tree.kernels if tree else "reference or CMSIS-NN",
                  tflm_dir=str(tree.path) if tree else "<tree from create_tflm_tree.py>",
                  tflm_lib=str(library) if library else "<libtflm.a>", cflags=" ".join(c_flags),
                  cxxflags=" ".join(cxx_flags), tflm_includes=includes, tflm_defines=defines,
                  ldflags=" ".join(_link_flags(platform, board)), c_sources=c_sources, cxx_sources=cxx_sources,
                  firmware=platform.firmware, machine=c_comment(board.emulator.get("machine", "")))
    (root / "Makefile").write_text(text, encoding="utf-8", newline="\n")


def _tools(board) -> dict:
    """C and C++ compilers, archiver and size tool for the board, or one line saying what to install."""
    if board.arch == "host":
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
    if board.arch != "host":
        from edgekit.platforms.sdk_tools import has_cxx_library

        if not has_cxx_library(tools["cxx"]):
            raise EdgekitError("arm-none-eabi-g++ has no C++ standard library (<vector> not found), which TFLite "
                               "Micro needs: apt-get install libstdc++-arm-none-eabi-newlib (or bash "
                               "scripts/setup.sh --tflm)")
    return tools


def toolchain(platform, board, env=None) -> Toolchain:
    """The tree (TFLM_DIR) and the compilers; a missing tree first: the project is generated, say how to get one."""
    tree = find_tree(None, None, os.environ if env is None else env)
    if tree is None:
        return Toolchain(platform.name, False, missing=NO_TREE)
    try:
        tools = _tools(board)
    except EdgekitError as missing:
        return Toolchain(platform.name, False, missing=str(missing))
    return Toolchain(platform.name, True, {**tools, LIBRARY: str(tree.path)})


def compile_project(platform, root, board, output, toolchain: Toolchain) -> BuildOutput:
    """libtflm.a for the model's operators from the cache (compiled on a first use), then the project's own
    sources, linked against it. Should the link miss a symbol, the whole tree is compiled and the link retried."""
    root = Path(root)
    tools = toolchain.programs
    tree = find_tree(tools[LIBRARY])
    ops = [entry["op"] for entry in output.model.ops] if getattr(output.model, "ops", None) else None

    def library_for(wanted):
        return build_library(tree, cc=tools["cc"], cxx=tools["cxx"], ar=tools["ar"], cpu_flags=_cpu_flags(board),
                             ops=wanted)

    library = library_for(ops)
    c_flags, _ = platform.flags(board)
    c_sources, cxx_sources = _sources(root)
    version = f'-DEK_VERSION="{version_text()}"'
    commands, objects = [], []
    for source in c_sources + cxx_sources:
        obj = f"build/{source[:source.rfind('.')]}.o"
        (root / obj).parent.mkdir(parents=True, exist_ok=True)
        compiler, flags = (tools["cc"], [*c_flags, version]) if source.endswith(".c") else (
            tools["cxx"], _cxx_flags(board, tree))
        commands.append([compiler, *flags, "-c", source, "-o", obj])
        objects.append(obj)
    firmware = root / platform.firmware
    partial = firmware.with_name(f".{firmware.name}.partial")
    log_path = root / "build" / "compile.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def link_command(lib):
        return [tools["cxx"], *objects, str(lib.path), *_link_flags(platform, board), "-o",
                str(partial.relative_to(root))]

    with open(log_path, "w", encoding="utf-8") as log:
        for command in commands:
            _run(command, root, board, log, log_path, partial)
        done = _run(link_command(library), root, board, log, log_path, partial, check=ops is None)
        if done.returncode != 0:  # a helper the selection missed: the whole library
            library = library_for(None)
            _run(link_command(library), root, board, log, log_path, partial)
    _write_makefile(platform, board, root, tree, library.path)
    os.replace(partial, firmware)
    from edgekit.platforms.make import read_sizes

    sizes = read_sizes(tools["size"], firmware)
    sizes.update(platform.extra_sizes(board))
    return BuildOutput(platform.firmware, sizes, str(log_path.relative_to(root)),
                       manifest={"tflm_library": library.to_dict()})


def _run(command, root: Path, board, log, log_path: Path, partial: Path, check: bool = True):
    from edgekit.platforms.make import first_problem

    try:
        done = run_tied(command, cwd=root, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, scratch_in=root)
    except subprocess.TimeoutExpired:
        raise EdgekitError(f"compiling {root} took more than {COMPILE_TIMEOUT} s; stopped") from None
    log.write(" ".join(command) + "\n" + done.stdout + done.stderr)
    log.flush()
    if done.returncode != 0 and check:
        partial.unlink(missing_ok=True)
        raise EdgekitError(f"compiling for {board.name} failed: {first_problem(done.stdout + done.stderr)} "
                           f"(full log: {log_path})")
    return done
