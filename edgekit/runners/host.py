"""The host runner: the compiled program itself, spoken to over its stdin/stdout."""

from __future__ import annotations

import os
import subprocess

from edgekit.device import BOOT_TIMEOUT, PipeTransport
from edgekit.errors import EdgekitError
from edgekit.runners.base import Capabilities, ProgramRunner, Session, start_session


class HostRunner(ProgramRunner):
    """The host board: the compiled program itself, spoken to over its stdin/stdout."""

    name = "host"
    capabilities = Capabilities(flash=True, serial=True)
    install_hint = "a host C compiler (apt-get install gcc)"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        runner.program = runner.firmware()
        if not args.dry_run and not os.access(runner.program, os.X_OK):
            raise EdgekitError(f"{runner.program} is not executable; rebuild with edgekit build")
        return runner

    def commands(self):
        return [[str(self.program)]]

    def open_session(self, boot_timeout: float = BOOT_TIMEOUT) -> Session:
        def connect(process, log_path):
            return PipeTransport(process, f"host program {self.program.name}", log_path)

        # absolute: the program runs in its build folder, where a relative path would point elsewhere
        return start_session([str(self.program.resolve())], "host", connect, boot_timeout, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, cwd=self.build.dir)
