"""A build folder and its manifest (written by `edgekit build`, read by `flash`, `profile` and the runners).

Below every stage that reads a build: the runners, flash and profile import it, it imports none of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgekit.boards import Board, load_board
from edgekit.errors import EdgekitError

MANIFEST = "edgekit-build.json"


@dataclass
class Build:
    """A build folder and its manifest (written by `edgekit build`), so no command repeats board or model."""

    dir: Path
    manifest: dict
    board: Board

    @property
    def firmware(self) -> Path | None:
        """The image edgekit compiled (None when the toolchain was not here)."""
        name = self.manifest.get("firmware")
        return (self.dir / name) if name else None

    @property
    def expected_firmware(self) -> Path | None:
        """Where the project's own build puts the image after a hand build (TFLite Micro projects)."""
        name = self.manifest.get("expected_firmware")
        return (self.dir / name) if name else None

    @property
    def image(self) -> Path | None:
        """The image to flash: the compiled one, else the one a hand build makes."""
        return self.firmware or self.expected_firmware

    @property
    def model_path(self) -> Path | None:
        name = self.manifest.get("model")
        return (self.dir / name) if name else None

    @property
    def float_model_path(self) -> Path | None:
        """The float .tflite the int8 model was quantized from (kept when the build started from Keras or float)."""
        name = self.manifest.get("float_model")
        return (self.dir / name) if name else None

    def layer_names(self) -> list:
        """The Keras layer of each operator (None where unknown): recorded by the build, else read from the
        converter's tensor names."""
        names = self.manifest.get("layer_names")
        if isinstance(names, list) and all(n is None or isinstance(n, str) for n in names):
            return names
        from edgekit.layer_names import operator_layers
        from edgekit.tflite_model import load_tflite

        return operator_layers(load_tflite(self.model_path))

    def device_operators(self, count: int) -> list[int]:
        """The graph operator of each of the device's `count` layers (native: views run none; TFLite Micro: all)."""
        recorded = self.manifest.get("device_layers")
        if isinstance(recorded, list) and len(recorded) == count and all(isinstance(i, int) for i in recorded):
            return recorded
        return list(range(count))

    @property
    def sizes(self) -> dict:
        return self.manifest.get("sizes") or {}


# The manifest's keys that flash and profile rely on, with their JSON types: a hand-edited manifest is refused
# naming the key, never read as something else. Path keys are relative to the build folder and stay inside it.
MANIFEST_TYPES = {"board": str, "backend": str, "model": str, "model_sha256": str, "model_name": str,
                  "firmware": str, "expected_firmware": str, "runner": str, "project": str, "build_hint": str,
                  "expected_flasher_args": str, "input": dict, "output": dict, "sizes": dict, "ops": list,
                  "flash_images": list, "macs": int, "num_layers": int, "arena_bytes": int,
                  "layer_names": list, "device_layers": list, "float_model": str}
MANIFEST_PATHS = ("model", "firmware", "expected_firmware", "expected_flasher_args", "float_model")


def load_build(build_dir) -> Build:
    from edgekit.fileio import MAX_TEXT_BYTES, read_input_file

    folder = Path(build_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise EdgekitError(f"{folder} is not a build folder (no {MANIFEST}); expected the output of edgekit build")
    raw = read_input_file(path, "build manifest", MAX_TEXT_BYTES)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = "nested too deeply" if isinstance(error, RecursionError) else " ".join(str(error).split())[:120]
        raise EdgekitError(f"{path} is not valid JSON ({detail}); rebuild with edgekit build") from None
    if not isinstance(manifest, dict) or "board" not in manifest:
        raise EdgekitError(f"{path} names no board; rebuild with edgekit build")
    _check_manifest(manifest, path, folder)
    return Build(folder, manifest, load_board(manifest["board"]))


def _check_manifest(manifest: dict, path: Path, folder: Path) -> None:
    for key, kind in MANIFEST_TYPES.items():
        value = manifest.get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            shown = json.dumps(value)[:60]
            raise EdgekitError(f"{path}: '{key}' is {shown}; expected {_TYPE_NAMES[kind]} (the manifest was "
                               "edited or is damaged); rebuild with edgekit build")
    for key in MANIFEST_PATHS:
        name = manifest.get(key)
        if name and (Path(name).is_absolute() or ".." in Path(name).parts):
            raise EdgekitError(f"{path}: '{key}' is {name!r}, outside the build folder; expected a path inside "
                               f"{folder}; rebuild with edgekit build")


_TYPE_NAMES = {str: "text", dict: "an object", list: "a list", int: "a whole number >= 0"}


# -- image size -----------------------------------------------------------------------------------------------


def _open_elf(f):
    """An ELFFile over an open file, or None when the file is not an ELF (or too damaged to read as one)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    if f.read(4) != b"\x7fELF":
        return None
    f.seek(0)
    try:
        return ELFFile(f)
    except (ELFError, ValueError, OSError):
        return None


def elf_flash_bytes(path) -> int | None:
    """Bytes an ELF puts in flash (file bytes of its loadable segments: text, rodata, data's initial values),
    or None when the file is not an ELF."""
    from elftools.common.exceptions import ELFError

    with open(path, "rb") as f:
        elf = _open_elf(f)
        if elf is None:
            return None
        try:
            return sum(segment["p_filesz"] for segment in elf.iter_segments() if segment["p_type"] == "PT_LOAD")
        except (ELFError, ValueError, OSError):  # a truncated program header table
            return None


def image_flash_bytes(build: Build, image: Path | None = None) -> int | None:
    """Flash the image needs: text + data from the manifest's sizes (measured when edgekit compiled it), else from
    the ELF (`image`, or the build's), else the file size."""
    sizes = build.sizes
    if "text" in sizes:
        return int(sizes.get("text", 0)) + int(sizes.get("rodata", 0)) + int(sizes.get("data", 0))
    image = image or build.image
    if image is None or not image.is_file():
        return None
    if image.suffix == ".uf2":
        return image.stat().st_size // 2  # 256 payload bytes in each 512-byte block
    from_elf = elf_flash_bytes(image)
    return from_elf if from_elf is not None else image.stat().st_size


def elf_sections(path) -> list[dict]:
    """The allocated sections of an ELF: name, address, size, whether they take space in the file (PROGBITS:
    flash) or only in RAM (NOBITS: .bss, the stack)."""
    from elftools.common.exceptions import ELFError

    with open(path, "rb") as f:
        elf = _open_elf(f)
        if elf is None:
            raise EdgekitError(f"{path} is not an ELF; expected the firmware the build wrote")
        try:
            return [{"name": section.name, "address": section["sh_addr"], "bytes": section["sh_size"],
                     "in_file": section["sh_type"] != "SHT_NOBITS"}
                    for section in elf.iter_sections()
                    if section["sh_flags"] & 0x2 and section["sh_size"]]  # SHF_ALLOC
        except (ELFError, ValueError, OSError) as error:
            raise EdgekitError(f"{path} is a damaged ELF ({error}); expected the firmware the build wrote") from None


def code_and_rodata_bytes(path) -> dict:
    """{"code_bytes", "rodata_bytes"} of an ELF: its executable sections, and its read-only data (.rodata*
    sections: the model's weights are there). None each when the file is not an ELF."""
    from elftools.common.exceptions import ELFError

    with open(path, "rb") as f:
        elf = _open_elf(f)
        if elf is None:
            return {"code_bytes": None, "rodata_bytes": None}
        try:
            sections = [s for s in elf.iter_sections() if s["sh_flags"] & 0x2 and s["sh_size"]]  # SHF_ALLOC
            code = sum(s["sh_size"] for s in sections if s["sh_flags"] & 0x4)  # SHF_EXECINSTR
            rodata = sum(s["sh_size"] for s in sections if s.name.startswith(".rodata") and not s["sh_flags"] & 0x4)
        except (ELFError, ValueError, OSError) as error:
            raise EdgekitError(f"{path} is a damaged ELF ({error}); expected the firmware the build wrote") from None
    return {"code_bytes": code, "rodata_bytes": rodata}


def json_safe(value):
    """A report made JSON-safe: numpy values as Python ones, NaN and infinities as None, bytes dropped."""
    import math

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items() if not isinstance(v, (bytes, bytearray))}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "__fspath__"):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
