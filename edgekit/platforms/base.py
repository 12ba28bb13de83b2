"""The platform interface: where a model runs. One module per platform (edgekit/platforms/*.py).

A platform is given a board (data, boards/*.toml) and a backend's declaration (BuildNeeds: sources, include
dirs, defines, libraries); it writes the scaffold (startup, linker script or SDK project files, the serial/timer
layer behind templates/app/edgekit_platform.h), builds when its toolchain is here (else says the exact command),
says where the image lands and which runners flash it. It never knows which backend it carries beyond the
declaration: a library it cannot provide is a refusal, whichever backend asked for it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgekit import __version__
from edgekit.backends.base import YES, BackendOutput, Target, Verdict, no
from edgekit.errors import EdgekitError
from edgekit.resources import templates_dir

APP_FILES = ("edgekit_app.c", "edgekit_app.h", "edgekit_backend.h", "edgekit_platform.h")


@dataclass
class Toolchain:
    family: str
    found: bool
    programs: dict = field(default_factory=dict)  # name -> path (or folder for SDK trees)
    missing: str = ""  # one line: what is missing and how to get it


@dataclass
class BuildOutput:
    firmware: str  # relative to the project folder
    sizes: dict
    log: str  # relative path of the build log
    manifest: dict = field(default_factory=dict)  # what the manifest records beyond them (e.g. tflm_library)


@dataclass
class PlatformProject:
    """What a platform generated around a backend's output."""

    family: str  # the platform's name
    files: list[str]  # relative to the project folder, sorted
    build_hint: str  # one line: how to build by hand
    expected_firmware: str  # where the build puts the image, relative to the project folder
    project_name: str = ""
    extra: dict = field(default_factory=dict)  # e.g. {"flasher_args": "build/flasher_args.json"} (ESP-IDF)
    backend: BackendOutput | None = None


class Platform:
    """One platform. Subclasses set the class attributes and implement `model_dir`, `generate`, `toolchain`,
    `compile`."""

    name = ""
    kernels = "cmsis-nn"  # TFLite Micro's optimized kernels on its chips (reference, cmsis-nn, esp-nn)
    cxx_ext = "cc"
    libraries: tuple[str, ...] = ()  # the libraries (Library.name) it can build or get from its SDK
    default_backend = "tflm"  # when neither the user nor the board file names one
    compiles_libraries = False  # edgekit itself compiles the declared libraries from their trees (host, qemu)
    psram_arena = False  # whether its scaffold can put a backend's arena in the board's external RAM

    def target(self, board, ram_budget: int | None = None, kernels: str | None = None) -> Target:
        """What the backend is told; `kernels`: those of the library tree the build was given, when one was."""
        return Target(platform=self.name, description=board.description, cxx_ext=self.cxx_ext,
                      kernels=kernels or ("reference" if board.arch == "host" else self.kernels),
                      ram_budget=board.ram_bytes if ram_budget is None else ram_budget,
                      psram_bytes=board.psram_bytes, word_bytes=8 if board.arch == "host" else 4)

    def supports(self, graph, board, backend) -> Verdict:
        """Whether this platform can build `backend`'s sources for `board` (from the backend's declaration)."""
        missing = [lib.name for lib in backend.libraries(self.target(board)) if lib.name not in self.libraries]
        if missing:
            return no(f"{board.name} is a {self.name} board, and edgekit does not build {', '.join(missing)} "
                      f"(which the {backend.name} backend needs) for {self.name} projects")
        return YES

    def model_dir(self, board, graph) -> str:
        """Where, in the project, the backend writes its sources (relative)."""
        raise NotImplementedError

    def generate(self, graph, board, root: Path, output: BackendOutput) -> PlatformProject:
        raise NotImplementedError

    def toolchain(self, board, output: BackendOutput | None = None, env: dict | None = None) -> Toolchain:
        raise NotImplementedError

    def compile(self, root: Path, board, project: PlatformProject, toolchain: Toolchain) -> BuildOutput:
        raise NotImplementedError

    def runners(self, board) -> list[str]:
        """The runners that can flash its image on `board` (the board file's list)."""
        from edgekit.runners import allowed_runners

        return allowed_runners(board)


# -- helpers every scaffold uses ----------------------------------------------------------------------------


def version_text() -> str:
    """edgekit's version as it goes into a C string literal (EK_VERSION): no quotes, no backslashes."""
    return re.sub(r"[^0-9A-Za-z.+\-]", "_", __version__)


def write_text(root: Path, relative: str, text: str, written: list[str]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    written.append(relative)


def copy_app(root: Path, dest_dir: str, written: list[str]) -> None:
    """The shared protocol server and the two contract headers, copied verbatim from templates/app/."""
    app = templates_dir() / "app"
    missing = [name for name in APP_FILES if not (app / name).is_file()]
    if missing:
        raise EdgekitError(f"stage app not available: templates/app lacks {', '.join(missing)}")
    for name in APP_FILES:
        relative = f"{dest_dir}/{name}" if dest_dir else name
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app / name, root / relative)
        written.append(relative)


def prefixed(folder: str, names) -> list[str]:
    return [f"{folder}/{name}" if folder else name for name in names]
