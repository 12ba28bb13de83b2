"""The backend interface: what computes the model, written behind templates/app/edgekit_backend.h.

A backend is given the int8 graph and a `Target` (what the platform says about where its sources go and which
optimized kernels the chip has; never the board), writes the model-side sources and declares what it needs
from a build: sources, include dirs, defines, libraries built from a tree outside the project (TFLite Micro).
Platforms read only that declaration. `supports(graph)` answers before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Verdict:
    """Yes, or why not (one line). A route that works is added by edgekit.routes, which tries the others."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


YES = Verdict(True)


def no(reason: str) -> Verdict:
    return Verdict(False, reason)


@dataclass(frozen=True)
class Library:
    """A library a backend's sources link against, built from a source tree the user provides."""

    name: str  # "tflite-micro": platforms that know how to build it declare it in `libraries`
    env: str  # the environment variable (and --flag) naming the tree, e.g. TFLM_DIR
    marker: str  # a file that proves a folder is such a tree, relative to it
    how_to: str  # one line: how to get a tree
    options: dict = field(default_factory=dict)  # kernels, defines the library must be compiled with


@dataclass(frozen=True)
class Target:
    """What a platform tells a backend: where sources go and how they are named, and which kernels it has."""

    platform: str  # the platform's name (templates that differ per SDK, e.g. ESP-IDF's heap_caps allocation)
    description: str  # free text for generated comments
    cxx_ext: str = "cc"  # C++ sources' extension (arduino-cli compiles .cpp, not .cc)
    kernels: str = "cmsis-nn"  # TFLite Micro's optimized kernels there: reference, cmsis-nn, esp-nn
    ram_budget: int | None = None  # internal RAM left for the arena
    psram_bytes: int = 0  # external RAM the arena may go to
    word_bytes: int = 4  # pointer size (8 on the 64-bit host): TFLite Micro's structs in the arena scale with it


@dataclass
class BuildNeeds:
    """What a platform must compile and link for this backend (paths relative to the model folder)."""

    sources: list[str]
    headers: list[str]
    include_dirs: list[str] = field(default_factory=lambda: ["."])
    defines: list[str] = field(default_factory=list)
    libraries: list[Library] = field(default_factory=list)
    cxx: bool = False  # sources include C++ (the platform enables its C++ compiler and runtime)

    @property
    def library_names(self) -> list[str]:
        return [lib.name for lib in self.libraries]


@dataclass
class BackendOutput:
    """What a backend wrote and what it reserved."""

    backend: str
    files: list[str]  # relative to the model folder
    needs: BuildNeeds
    arena_bytes: int | None
    manifest: dict = field(default_factory=dict)  # what the build manifest records beyond arena_bytes
    model: object = None  # NativeModel or TflmModel


class Backend:
    """One backend. Subclasses set `name` and implement `supports`, `ram_reserved` and `write`."""

    name = ""

    def libraries(self, target: Target) -> list[Library]:
        """The libraries its sources need on `target` (what a platform checks before anything is written)."""
        return []

    def supports(self, graph) -> Verdict:
        """Whether this backend can run every operator of `graph`."""
        raise NotImplementedError

    def write(self, graph, model_dir: Path, target: Target, **options) -> BackendOutput:
        """Write the model-side sources into `model_dir` (which exists)."""
        raise NotImplementedError
