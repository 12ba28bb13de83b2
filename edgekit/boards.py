"""Boards are data: one TOML file per board in boards/. Adding a board is adding a file; no code switches on names.

Keys every board file has (see boards/README.md for the full list and meaning):
  name, description, mcu, core, arch, clock_hz, flash_bytes, ram_bytes, psram_bytes,
  project (which project template family), runtime_flash_bytes (code estimate outside the model, per backend),
  runtime_ram_bytes (RAM estimate outside the arena: stack, protocol buffers, interpreter objects, per backend),
  [flash] default_runner, runners, [serial] baud; emulated boards add [emulator]; Arm boards add [toolchain].
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.resources import boards_dir

REQUIRED = ("name", "description", "mcu", "core", "arch", "clock_hz", "flash_bytes", "ram_bytes", "project")


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    mcu: str
    core: str
    arch: str  # "arm", "xtensa", "riscv", "aarch64", "host"
    clock_hz: int
    flash_bytes: int
    ram_bytes: int  # internal SRAM usable by the application's data, stack and arena
    project: str  # project template family: esp-idf, cmake-arm, arduino, pico-sdk, qemu, host
    psram_bytes: int = 0
    runtime_flash_bytes: dict = field(default_factory=dict)  # backend -> estimated code bytes besides the model
    runtime_ram_bytes: dict = field(default_factory=dict)  # backend -> estimated RAM besides the arena (stack, app)
    flash: dict = field(default_factory=dict)  # default_runner, runners, and per-runner settings
    serial: dict = field(default_factory=dict)  # baud, ...
    emulator: dict = field(default_factory=dict)  # qemu machine, memory map, uart (emulated boards only)
    toolchain: dict = field(default_factory=dict)  # compiler flags (cpu, fpu, float-abi) for generated builds
    data: dict = field(default_factory=dict, repr=False)  # the whole file, for template-specific keys

    @property
    def emulated(self) -> bool:
        return bool(self.emulator)

    @property
    def is_64bit(self) -> bool:
        """A 64-bit target (the host, aarch64 Linux and Android): pointers and TFLite Micro's arena as measured."""
        return self.arch in ("host", "aarch64")

    @property
    def default_runner(self) -> str | None:
        return self.flash.get("default_runner")

    def runtime_flash_estimate(self, backend: str) -> int:
        return int(self.runtime_flash_bytes.get(backend, 0))

    def runtime_ram_estimate(self, backend: str) -> int:
        return int(self.runtime_ram_bytes.get(backend, 0))

    def to_dict(self) -> dict:
        return dict(self.data)


# Types of the keys the code reads directly: a typo in a board file fails here, in one line, not deep in a stage.
_STRINGS = ("name", "description", "mcu", "core", "arch", "project")
_SIZES = ("clock_hz", "flash_bytes", "ram_bytes", "psram_bytes")
_TABLES = ("runtime_flash_bytes", "runtime_ram_bytes", "flash", "serial", "emulator", "toolchain")


def _check_types(path: Path, data: dict) -> None:
    for key in _STRINGS:
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise EdgekitError(f"board file {path.name}: {key} is {data[key]!r}; expected a non-empty string")
    for key in _SIZES:
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EdgekitError(f"board file {path.name}: {key} is {value!r}; expected a whole number >= 0")
    for key in _TABLES:
        if key in data and not isinstance(data[key], dict):
            raise EdgekitError(f"board file {path.name}: {key} is {data[key]!r}; expected a [{key}] table")
    for key in ("runtime_flash_bytes", "runtime_ram_bytes"):
        for backend, value in data.get(key, {}).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EdgekitError(f"board file {path.name}: {key}.{backend} is {value!r}; expected a whole "
                                   f"number of bytes >= 0")


def load_board_file(path) -> Board:
    """One board file, checked: valid TOML, every required key, the right types."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise EdgekitError(f"board file {path.name} is not valid TOML: {error}") from None
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise EdgekitError(f"board file {path.name} lacks {', '.join(missing)}; see boards/README.md")
    _check_types(path, data)
    known = {f for f in Board.__dataclass_fields__ if f != "data"}
    return Board(**{k: v for k, v in data.items() if k in known}, data=data)


_board_from_file = load_board_file  # the former private name


@cache
def all_boards(folder: Path | None = None) -> dict[str, Board]:
    """Every board file of `folder` (edgekit's boards/ by default), by name."""
    boards = {}
    for path in sorted(Path(folder or boards_dir()).glob("*.toml")):
        board = load_board_file(path)
        if board.name != path.stem:
            raise EdgekitError(f"board file {path.name} names itself '{board.name}'; the name must match the file")
        boards[board.name] = board
    return boards


def load_board(name: str) -> Board:
    boards = all_boards()
    if name not in boards:
        raise EdgekitError(f"unknown board '{name}'; expected one of: {', '.join(boards)}")
    return boards[name]
