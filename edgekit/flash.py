"""`edgekit flash` and `edgekit profile`'s way to the device: a build folder's runner, or its serial port.

The runners themselves live in edgekit.runners (one module per flash tool); the build folder and its manifest
in edgekit.build_folder. The names below are re-exported for the callers that knew them here.
"""

from __future__ import annotations

import shlex

from edgekit.build_folder import MANIFEST, Build, elf_flash_bytes, image_flash_bytes, load_build  # noqa: F401
from edgekit.device import BOOT_TIMEOUT, Device, SerialTransport
from edgekit.errors import UsageError
from edgekit.runners import RUNNERS, create_runner, runner_class  # noqa: F401
from edgekit.runners.base import (Capabilities, Runner, RunnerArgs, Session, ToolRunner,  # noqa: F401
                                  require)
from edgekit.runners.qemu import QemuRunner  # noqa: F401
from edgekit.runners.uf2 import bin_to_uf2, find_volume  # noqa: F401


def flash_build(build_dir, port: str | None = None, runner: str | None = None, dry_run: bool = False,
                log=None, extra: dict | None = None) -> dict:
    """Put the build on its board (qemu/host: boot it and check it answers). Returns a report dict.

    `extra`: runner options (`benchmark_model`: LiteRT's benchmark_model for the adb and ssh runners)."""
    build = load_build(build_dir)
    chosen = create_runner(build, runner, port, dry_run, extra)
    commands = [shlex.join(c) for c in chosen.commands()]
    image = chosen.image_file
    report = {"board": build.board.name, "runner": chosen.name, "dry_run": dry_run, "commands": commands,
              "image": str(image) if image else None, "built": bool(image and image.exists()),
              "image_bytes": image_flash_bytes(build, image), "flash_bytes": build.board.flash_bytes}
    if dry_run:
        return report
    report.update(chosen.flash(log))
    return report


def open_device(build: Build, port: str | None = None, runner: str | None = None,
                boot_timeout: float = BOOT_TIMEOUT) -> Session:
    """A session with the build's device: the given port, or the runner's own line (emulator, host program,
    a program over ssh, whose --port is the board's address)."""
    if port and runner_class(build, runner).capabilities.address:
        return create_runner(build, runner, port).open_session(boot_timeout)
    if port:
        transport = SerialTransport(port, int(build.board.serial.get("baud", 115200)))
        device = Device(transport)
        try:
            boot = device.sync(boot_timeout)
        except BaseException:
            device.close()
            raise
        return Session(device, boot_lines=boot)
    if not runner_class(build, runner).capabilities.serial:
        raise UsageError(f"board {build.board.name} is reached through its serial port; pass --port "
                         "(e.g. /dev/ttyACM0)")
    return create_runner(build, runner).open_session(boot_timeout)
