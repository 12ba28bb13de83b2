"""What the four SDK/CMake platforms (cmake-arm, esp-idf, arduino, pico-sdk) share: the scaffold context, the
README, the write-out. Each platform module adds its own files, toolchain and build around this."""

from __future__ import annotations

from pathlib import Path

from edgekit.backends.base import BackendOutput
from edgekit.codegen.common import c_comment, project_name, render
from edgekit.platforms.base import PlatformProject, copy_app, prefixed, version_text, write_text
from edgekit.tflm_kernels import tflm_target_arch


def scaffold_context(platform, graph, board, output: BackendOutput, model_dir: str) -> dict:
    """The backend's template context with the board and the build declaration added."""
    ctx = dict(getattr(output.model, "context", None) or {})
    ctx.update(board=board, board_comment=c_comment(board.description), project_name=project_name(graph),
               family=platform.name, version=version_text(),
               backend=output.backend, backend_sources=prefixed(model_dir, output.needs.sources),
               model_sources=list(output.needs.sources), libraries=output.needs.library_names,
               cxx=output.needs.cxx, defines=list(output.needs.defines),
               tflm="tflite-micro" in output.needs.library_names)
    ctx.setdefault("arena_in_psram", False)
    return ctx


def finish(platform, root: Path, ctx: dict, output: BackendOutput, model_dir: str, written: list[str],
           hint: str, image: str, extra: dict | None = None) -> PlatformProject:
    """The app files, the README, and the project description (files sorted)."""
    copy_app(root, model_dir, written)
    written.extend(prefixed(model_dir, output.files))
    write_readme(root, ctx, hint, image, written, tflm_target_arch=tflm_target_arch(ctx["board"]))
    return PlatformProject(platform.name, sorted(set(written)), hint, image, ctx["project_name"], extra or {},
                           output)


def write_readme(root: Path, ctx: dict, hint: str, image: str, written: list[str], **extra) -> None:
    write_text(root, "README.md", render("tflm/README.md.j2", **{**ctx, **extra, "build_hint": hint,
                                                                  "expected_firmware": image}), written)
