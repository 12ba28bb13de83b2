"""A build folder and its manifest (written by `edgekit build`, read by `flash`, `profile` and the runners).

Below every stage that reads a build: the runners, flash and profile import it, it imports none of them.
"""

from __future__ import annotations

import json
import struct
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
    def sizes(self) -> dict:
        return self.manifest.get("sizes") or {}


# The manifest's keys that flash and profile rely on, with their JSON types: a hand-edited manifest is refused
# naming the key, never read as something else. Path keys are relative to the build folder and stay inside it.
MANIFEST_TYPES = {"board": str, "backend": str, "model": str, "model_sha256": str, "model_name": str,
                  "firmware": str, "expected_firmware": str, "runner": str, "project": str, "build_hint": str,
                  "expected_flasher_args": str, "input": dict, "output": dict, "sizes": dict, "ops": list,
                  "flash_images": list, "macs": int, "num_layers": int, "arena_bytes": int}
MANIFEST_PATHS = ("model", "firmware", "expected_firmware", "expected_flasher_args")


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


def elf_flash_bytes(path) -> int | None:
    """Bytes an ELF puts in flash (file bytes of its loadable segments: text, rodata, data's initial values),
    or None when the file is not an ELF."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return None
        is64, little = head[4] == 2, head[5] == 1
        e = "<" if little else ">"
        if is64:
            phoff, = struct.unpack_from(e + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(e + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(e + "I", head, 28)
            phentsize, phnum = struct.unpack_from(e + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    total = 0
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        kind, = struct.unpack_from(e + "I", entry, 0)
        if kind != 1:  # PT_LOAD
            continue
        filesz, = struct.unpack_from(e + ("Q" if is64 else "I"), entry, 32 if is64 else 16)
        total += filesz
    return total


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
    """The allocated sections of a 32-bit little-endian ELF: name, address, size, whether they take space in
    the file (PROGBITS: flash) or only in RAM (NOBITS: .bss, the stack)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise EdgekitError(f"{path} is not a 32-bit little-endian ELF; expected the firmware the build wrote")
    shoff, = struct.unpack_from("<I", data, 32)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 46)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    sections = []
    for name, kind, flags, addr, _offset, size, *_ in headers:
        if not flags & 0x2 or size == 0:  # SHF_ALLOC
            continue
        end = data.index(b"\0", names_at + name)
        sections.append({"name": data[names_at + name:end].decode("ascii", "replace"), "address": addr,
                         "bytes": size, "in_file": kind != 8})  # SHT_NOBITS
    return sections
