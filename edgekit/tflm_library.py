"""TFLite Micro as a static library, compiled once per (tree, kernels, compiler, flags) into a cache.

A TFLite Micro tree is what its project generator writes (create_tflm_tree.py): `tensorflow/`, `third_party/`,
with CMSIS-NN kernels in `tensorflow/lite/micro/kernels/cmsis_nn/` when it was made with
OPTIMIZED_KERNEL_DIR=cmsis_nn. Compiling all of it takes many minutes, so objects are cached in
$EDGEKIT_CACHE/tflm/<key>/obj/ (default ~/.cache/edgekit), one folder per (tree contents, kernels, compilers,
flags), and only what a model needs is compiled: the interpreter and the helpers, and the kernels of the
model's operators. The archive of a set of objects (libtflm-<set>.a) is kept beside them, so a second build of
the same model compiles nothing and a second model compiles only its new kernels.

Left out: the tree's debug_log.cc and micro_time.cc (the project supplies both: the serial line carries the
device protocol, and time is the platform's), tests, examples and the signal library (no builtin operator uses
it).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError, UsageError
from edgekit.processes import run_tied

KERNELS = ("reference", "cmsis-nn")
CACHE_FORMAT = 1
COMPILE_TIMEOUT = 900  # seconds, per source file
TREE_HINT = ("make one with TFLite Micro's tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py "
             "(--makefile_options=\"TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp OPTIMIZED_KERNEL_DIR=cmsis_nn\" "
             "for CMSIS-NN kernels, without OPTIMIZED_KERNEL_DIR for the reference ones)")
_EXCLUDED_NAMES = ("debug_log.cc", "micro_time.cc")
CXX_FLAGS = ["-std=c++17", "-O2", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
             "-fno-use-cxa-atexit", "-ffunction-sections", "-fdata-sections"]
C_FLAGS = ["-std=c11", "-O2", "-ffunction-sections", "-fdata-sections"]
# NDEBUG: the reference kernels are several times slower with their assertions. TF_LITE_STRIP_ERROR_STRINGS is
# left out: it also compiles out the per-operator profiler hook that the per-layer times come from.
DEFINES = ["TF_LITE_STATIC_MEMORY", "NDEBUG"]


@dataclass
class TflmTree:
    """A TFLite Micro tree and the kernels it carries."""

    path: Path
    kernels: str  # "reference" or "cmsis-nn"

    @property
    def include_dirs(self) -> list[Path]:
        third = self.path / "third_party"
        dirs = [self.path, third / "flatbuffers" / "include", third / "gemmlowp", third / "ruy"]
        if self.kernels == "cmsis-nn":
            dirs += [third / "cmsis_nn", third / "cmsis_nn" / "Include", third / "cmsis" / "CMSIS" / "Core" / "Include"]
        return dirs

    @property
    def defines(self) -> list[str]:
        return DEFINES + (["CMSIS_NN"] if self.kernels == "cmsis-nn" else [])


@dataclass
class TflmLibrary:
    """The cached static library and what a project needs to compile against it."""

    path: Path  # .../libtflm.a
    tree: TflmTree
    cache_hit: bool
    seconds: float  # this call's time: the build's, or the cache look-up's
    sources: int  # source files in the library
    key: str
    include_dirs: list[Path] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)
    compiled: int = 0  # of them compiled by this call (0: everything came from the cache)

    def to_dict(self) -> dict:
        return {"library": str(self.path), "tree": str(self.tree.path), "kernels": self.tree.kernels,
                "cache_hit": self.cache_hit, "seconds": round(self.seconds, 2), "sources": self.sources,
                "compiled": self.compiled,
                "key": self.key}


def is_tree(path) -> bool:
    return (Path(path) / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file()


def tree_kernels(path) -> str:
    """The kernels a tree was generated with: its cmsis_nn kernel folder says CMSIS-NN."""
    return "cmsis-nn" if (Path(path) / "tensorflow/lite/micro/kernels/cmsis_nn").is_dir() else "reference"


def find_tree(tflm_dir=None, kernels: str | None = None, env=None) -> TflmTree | None:
    """The tree from --tflm-dir, else $TFLM_DIR; None when neither is set. A given path must be a tree, and its
    kernels the requested ones (a tree holds one set: create_tflm_tree.py copies the optimized kernels over the
    reference ones)."""
    env = os.environ if env is None else env
    if kernels is not None and kernels not in KERNELS:
        raise UsageError(f"unknown --tflm-kernels '{kernels}'; expected one of: {', '.join(KERNELS)}")
    given, where = (tflm_dir, "--tflm-dir") if tflm_dir else (env.get("TFLM_DIR"), "TFLM_DIR")
    if not given:
        return None
    path = Path(given).expanduser()
    if not is_tree(path):
        raise UsageError(f"{where} {given} is not a TFLite Micro tree (no tensorflow/lite/micro/"
                         f"micro_interpreter.h); expected the output of create_tflm_tree.py: {TREE_HINT}")
    found = tree_kernels(path)
    if kernels is not None and kernels != found:
        how = ("made with OPTIMIZED_KERNEL_DIR=cmsis_nn" if kernels == "cmsis-nn"
               else "made without OPTIMIZED_KERNEL_DIR")
        raise UsageError(f"{where} {given} has {found} kernels and --tflm-kernels asks for {kernels}; give a tree "
                         f"{how} (create_tflm_tree.py)")
    return TflmTree(path.resolve(), found)


def cache_root(env=None) -> Path:
    env = os.environ if env is None else env
    if env.get("EDGEKIT_CACHE"):
        return Path(env["EDGEKIT_CACHE"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "edgekit"


def library_sources(tree: TflmTree) -> list[Path]:
    """The tree's library sources, relative to it, sorted."""
    root = tree.path
    found = [p for p in (root / "tensorflow").rglob("*") if p.suffix in (".cc", ".c")]
    if tree.kernels == "cmsis-nn":
        found += list((root / "third_party" / "cmsis_nn" / "Source").rglob("*.c"))
    keep = []
    for p in found:
        relative = p.relative_to(root)
        if p.name in _EXCLUDED_NAMES or p.name.endswith("_test.cc") or "examples" in relative.parts:
            continue
        keep.append(relative)
    return sorted(keep)


def _tree_digest(tree: TflmTree, sources: list[Path]) -> str:
    """A hash of every source and header of the tree (names and contents): an edited tree is another library."""
    digest = hashlib.sha256()
    files = sorted({*sources, *(p.relative_to(tree.path) for p in tree.path.rglob("*") if p.suffix in (".h", ".hpp"))})
    for relative in files:
        digest.update(str(relative).encode() + b"\0")
        digest.update(hashlib.sha256((tree.path / relative).read_bytes()).digest())
    return digest.hexdigest()


def _compiler_identity(compiler: str) -> str:
    try:
        done = run_tied([compiler, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise EdgekitError(f"cannot run {compiler}: {error.strerror or error}") from None
    return f"{shutil.which(compiler) or compiler}\n{done.stdout.splitlines()[0] if done.stdout else ''}"


def _lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another build of the same library: wait for it, then reuse its result
    return fd


_REGISTRATION = re.compile(r"\bRegister_([A-Z0-9_]+)\s*\(\s*\)\s*\{")


def needed_sources(tree: TflmTree, sources: list[Path], ops) -> list[Path]:
    """The sources a model with these builtin operators links: every file but the kernels that register only
    other operators (a kernel file defining Register_CONV_2D... is needed when CONV_2D is). `ops` None: all."""
    if ops is None:
        return sources
    wanted = set(ops)
    keep = []
    for relative in sources:
        registered = _REGISTRATION.findall((tree.path / relative).read_text(errors="replace")) \
            if relative.suffix == ".cc" else []
        if not registered or any(name == op or name.startswith(op + "_") for name in registered for op in wanted):
            keep.append(relative)
    return keep


def build_library(tree: TflmTree, *, cc: str, cxx: str, ar: str, cpu_flags: list[str], ops=None, env=None,
                  jobs: int | None = None) -> TflmLibrary:
    """A static library of the tree for these compilers and CPU flags, holding what the builtin `ops` need (all
    of the tree when None). Objects are cached per (tree, kernels, compilers, flags): a second model compiles
    only the kernels the first did not need, a second build of the same model compiles nothing."""
    started = time.monotonic()
    sources = library_sources(tree)
    if not sources:
        raise EdgekitError(f"the TFLite Micro tree {tree.path} has no library sources; expected the output of "
                           f"create_tflm_tree.py")
    includes = [f"-I{d}" for d in tree.include_dirs]
    defines = [f"-D{d}" for d in tree.defines]
    cxx_command = [cxx, *cpu_flags, *CXX_FLAGS, *defines, *includes, "-w"]
    c_command = [cc, *cpu_flags, *C_FLAGS, *defines, *includes, "-w"]
    identity = {"format": CACHE_FORMAT, "kernels": tree.kernels, "cxx": _compiler_identity(cxx),
                "cc": _compiler_identity(cc), "cxx_command": cxx_command[1:], "c_command": c_command[1:],
                "tree": _tree_digest(tree, sources)}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    root = cache_root(env) / "tflm"
    folder = root / key
    try:
        (folder / "obj").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgekitError(f"cannot create the TFLite Micro cache {root}: {error.strerror}; set EDGEKIT_CACHE to "
                           f"a writable folder") from None
    chosen = needed_sources(tree, sources, ops)
    objects = [folder / "obj" / (str(s).replace("/", "__") + ".o") for s in chosen]
    name = hashlib.sha256("\n".join(map(str, chosen)).encode()).hexdigest()[:12]
    library = folder / f"libtflm-{name}.a"
    fd = _lock(root / f".{key}.lock")
    try:
        (folder / "library.json").write_text(json.dumps({**identity, "tree_path": str(tree.path)}, indent=2) + "\n")
        missing = [i for i, obj in enumerate(objects) if not obj.is_file()]
        _compile_all(tree, [chosen[i] for i in missing], [objects[i] for i in missing], cxx_command, c_command,
                     folder, jobs)
        if missing or not library.is_file():
            partial = library.with_name(f".{library.name}.{os.getpid()}")
            partial.unlink(missing_ok=True)
            _run_logged([ar, "rcs", str(partial), *(str(o.relative_to(folder)) for o in objects)], folder,
                        "archiving TFLite Micro")
            os.replace(partial, library)
    finally:
        os.close(fd)
    return TflmLibrary(library, tree, not missing, time.monotonic() - started, len(chosen), key, tree.include_dirs,
                       tree.defines, compiled=len(missing))


def _compile_all(tree, sources, objects, cxx_command, c_command, folder: Path, jobs: int | None) -> None:
    """Each source to its object (written beside it, then renamed: an interrupted build leaves no half object),
    `jobs` at a time; the first failure stops the build with its first error line."""

    def one(index: int):
        source, obj = tree.path / sources[index], objects[index]
        partial = obj.with_name(f".{obj.name}.{os.getpid()}")
        base = cxx_command if source.suffix == ".cc" else c_command
        done = run_tied([*base, "-c", str(source), "-o", str(partial)], capture_output=True, text=True,
                        timeout=COMPILE_TIMEOUT, scratch_in=folder)
        if done.returncode == 0:
            os.replace(partial, obj)
        else:
            partial.unlink(missing_ok=True)
        return done

    if not sources:
        return
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        try:
            for index, done in enumerate(pool.map(one, range(len(sources)))):
                if done.returncode != 0:
                    log = folder / "last-failure.log"
                    log.write_text(done.stdout + done.stderr)
                    first = next((line for line in (done.stderr or "").splitlines() if "error" in line),
                                 f"exit status {done.returncode}")
                    raise EdgekitError(f"compiling TFLite Micro's {sources[index]} failed: {first.strip()[:200]} "
                                       f"(full log: {log})")
        except subprocess.TimeoutExpired:
            raise EdgekitError(f"compiling a TFLite Micro source took more than {COMPILE_TIMEOUT} s; stopped") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _run_logged(command: list[str], cwd: Path, what: str) -> None:
    done = run_tied(command, cwd=cwd, capture_output=True, text=True, timeout=600, scratch_in=cwd)
    if done.returncode != 0:
        raise EdgekitError(f"{what} failed: {(done.stderr or done.stdout).strip().splitlines()[-1][:200]}")
