"""The qemu-user runner: the cross-compiled Linux program run by QEMU's user mode, spoken to over its pipes.

The same pipe protocol as the host board (edgekit.runners.host): QEMU user mode passes the program's stdin and
stdout through. It counts no instructions, so the board file says that profile reports no latency there.
"""

from __future__ import annotations

import subprocess

from edgekit.device import BOOT_TIMEOUT, PipeTransport
from edgekit.errors import EdgekitError
from edgekit.runners.base import Capabilities, ProgramRunner, Session, require, start_session


class QemuUserRunner(ProgramRunner):
    name = "qemu-user"
    capabilities = Capabilities(flash=True, serial=True)
    install_hint = "apt-get install qemu-user"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        settings = board.data.get("qemu_user") or {}
        if not settings.get("program"):
            raise EdgekitError(f"board {board.name} has no [qemu_user] program; the qemu-user runner needs one "
                               "(e.g. qemu-aarch64)")
        runner.emulator = str(settings["program"])
        if not args.dry_run:
            runner.emulator = require(runner.emulator, str(settings.get("install", cls.install_hint)))
        runner.program = runner.firmware()
        return runner

    def commands(self):
        return [[self.emulator, str(self.program)]]

    def open_session(self, boot_timeout: float = BOOT_TIMEOUT) -> Session:
        def connect(process, log_path):
            return PipeTransport(process, f"{self.program.name} under {self.emulator}", log_path)

        return start_session([self.emulator, str(self.program.resolve())], "qemuuser", connect, boot_timeout,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self.build.dir)
