"""The ssh runner (Linux boards): copy the native program (and the chosen LiteRT variant) to the board, then
speak the device protocol to the program over ssh's pipes, exactly like the host board, or run LiteRT's
benchmark_model there when --benchmark-model names it (a path on the board, or a local binary to copy).

--port is the board's address: user@host or ssh://user@host[:port]. ssh and scp are OpenSSH's.
"""

from __future__ import annotations

import re
import subprocess

from edgekit.device import BOOT_TIMEOUT, PipeTransport
from edgekit.errors import EdgekitError, UsageError
from edgekit.runners.adb import benchmark_binary, run_benchmark, shipped_model
from edgekit.runners.base import Capabilities, ProgramRunner, Session, require, run_tool, start_session
from edgekit.runners.benchmark_model import benchmark_arguments, profile_report

ADDRESS = re.compile(r"^(?:ssh://)?([A-Za-z0-9._-]+@)?([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])(?::([0-9]{1,5}))?$")
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


class SshRunner(ProgramRunner):
    name = "ssh"
    capabilities = Capabilities(flash=True, serial=True, address=True, benchmark=True)
    install_hint = "apt-get install openssh-client"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        runner.destination, runner.ssh_port = runner._address()
        runner.remote_dir = str((board.data.get("mobile") or {}).get("remote_dir", "/tmp/edgekit"))
        runner.model = shipped_model(build)
        runner.program = runner.firmware()
        runner.local_binary, on_device = benchmark_binary(args)
        runner.binary = on_device or (f"{runner.remote_dir}/benchmark_model" if runner.local_binary else None)
        runner.ssh, runner.scp = "ssh", "scp"
        if not args.dry_run:
            runner.ssh = require("ssh", cls.install_hint)
            runner.scp = require("scp", cls.install_hint)
        return runner

    @property
    def benchmarks(self) -> bool:
        """profile runs benchmark_model when it was named; else the native program over the protocol."""
        return self.binary is not None

    def _address(self) -> tuple[str, str | None]:
        given = self.args.port
        if not given:
            if self.args.dry_run:
                return "USER@BOARD", None
            raise UsageError(f"runner ssh needs {self.board.name}'s address: pass --port user@host (or "
                             "ssh://user@host:port)")
        match = ADDRESS.match(given)
        if not match:
            raise UsageError(f"--port {given!r} is not an ssh address; expected user@host or ssh://user@host:port")
        return f"{match.group(1) or ''}{match.group(2)}", match.group(3)

    def _ssh(self) -> list[str]:
        return [self.ssh, *SSH_OPTIONS, *(["-p", self.ssh_port] if self.ssh_port else []), self.destination]

    def _scp(self, files: list[str]) -> list[str]:
        return [self.scp, *SSH_OPTIONS, *(["-P", self.ssh_port] if self.ssh_port else []), *files,
                f"{self.destination}:{self.remote_dir}/"]

    def remote_program(self) -> str:
        return f"{self.remote_dir}/{self.program.name}"

    def copy_commands(self) -> list[list[str]]:
        files = [str(self.program), str(self.model)] + ([self.local_binary] if self.local_binary else [])
        return [[*self._ssh(), "mkdir", "-p", self.remote_dir], self._scp(files)]

    def run_command(self, runs: int | None = None) -> tuple[list[str], str]:
        variant = (self.build.manifest.get("mobile") or {}).get("chosen")
        arguments, accelerator = benchmark_arguments(self.board, f"{self.remote_dir}/{self.model.name}", variant,
                                                     int(self.args.extra.get("threads") or 1),
                                                     *([runs] if runs else []))
        return [*self._ssh(), self.binary, *arguments], accelerator

    def commands(self):
        last = self.run_command()[0] if self.benchmarks else [*self._ssh(), "-T", self.remote_program()]
        return [*self.copy_commands(), last]

    def flash(self, log=None) -> dict:
        for command in self.copy_commands():
            run_tool(command, log)
        if self.benchmarks:
            return {"copied": self.remote_dir, "benchmark": self.benchmark(log=log)}
        return {"copied": self.remote_dir, **super().flash(log)}

    def benchmark(self, runs: int | None = None, log=None) -> dict:
        command, accelerator = self.run_command(runs)
        return profile_report(self.build, self.name, run_benchmark(command, log), accelerator, command)

    def open_session(self, boot_timeout: float = BOOT_TIMEOUT) -> Session:
        def connect(process, log_path):
            return PipeTransport(process, f"{self.program.name} on {self.destination}", log_path)

        return start_session([*self._ssh(), "-T", self.remote_program()], "ssh", connect, boot_timeout,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
