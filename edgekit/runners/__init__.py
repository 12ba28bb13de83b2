"""Flash runners, one module each (Zephyr's `west flash` shape): how an image gets onto its device.

Each runner has a `name`, `capabilities` and `create(board, build, args)`, which gathers and checks everything
before anything runs, so that `flash()` asks nothing and a dry run prints the exact commands. Which runners may
flash a board is the board's data (`[flash] runners`), else its platform's default (edgekit.platforms).
"""

from __future__ import annotations

from edgekit.build_folder import Build
from edgekit.errors import EdgekitError, UsageError
from edgekit.runners.adb import AdbRunner
from edgekit.runners.arduino_cli import ArduinoCliRunner
from edgekit.runners.base import Capabilities, Runner, RunnerArgs, Session  # noqa: F401  (the interface)
from edgekit.runners.esptool import EsptoolRunner
from edgekit.runners.host import HostRunner
from edgekit.runners.openocd import OpenocdRunner
from edgekit.runners.pyocd import PyocdRunner
from edgekit.runners.qemu import QemuRunner
from edgekit.runners.qemu_user import QemuUserRunner
from edgekit.runners.ssh import SshRunner
from edgekit.runners.uf2 import Uf2Runner

RUNNERS = {cls.name: cls for cls in (QemuRunner, HostRunner, EsptoolRunner, PyocdRunner, OpenocdRunner,
                                     Uf2Runner, ArduinoCliRunner, QemuUserRunner, AdbRunner, SshRunner)}


def allowed_runners(board) -> list[str]:
    """The runners that can flash `board`: its [flash] runners, else its default runner."""
    return list(board.flash.get("runners") or ([board.default_runner] if board.default_runner else []))


def runner_class(build: Build, name: str | None = None) -> type[Runner]:
    """The runner the board names (or `name`), checked against the board's list."""
    board = build.board
    name = name or build.manifest.get("runner") or board.default_runner
    if not name:
        raise EdgekitError(f"board {board.name} names no flash runner; pass --runner "
                           f"({', '.join(RUNNERS)})")
    if name not in RUNNERS:
        raise UsageError(f"unknown runner '{name}'; expected one of: {', '.join(RUNNERS)}")
    allowed = allowed_runners(board)
    if name not in allowed:
        raise UsageError(f"board {board.name} cannot be flashed with {name}; its runners are: {', '.join(allowed)}")
    return RUNNERS[name]


def create_runner(build: Build, name: str | None = None, port: str | None = None, dry_run: bool = False,
                  extra: dict | None = None) -> Runner:
    """The runner the board names (or `name`), created with everything it needs."""
    return runner_class(build, name).create(build.board, build, RunnerArgs(port=port, dry_run=dry_run,
                                                                           extra=dict(extra or {})))
