"""The qemu runner: boots the firmware in QEMU, its UART on a loopback socket that we create (no port race)."""

from __future__ import annotations

import socket
import subprocess

from edgekit.build_folder import image_flash_bytes
from edgekit.device import BOOT_TIMEOUT, SerialTransport, exit_text
from edgekit.errors import UsageError
from edgekit.runners.base import Capabilities, ProgramRunner, Session, require, start_session


class QemuRunner(ProgramRunner):
    """Boots the firmware in QEMU, its UART on a loopback socket that we create (no port race)."""

    name = "qemu"
    capabilities = Capabilities(flash=True, serial=True)
    install_hint = "apt-get install qemu-system-arm"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        if not board.emulated:
            raise UsageError(f"board {board.name} is not emulated; the qemu runner needs a board with [emulator]")
        runner.machine = str(board.emulator["machine"])
        runner.program = "qemu-system-" + ("arm" if board.arch == "arm" else board.arch)
        if not args.dry_run:
            runner.program = require(runner.program, cls.install_hint)
        runner.kernel = runner.firmware()
        runner.check_size(image_flash_bytes(build), int(board.emulator.get("code_bytes", board.flash_bytes)))
        return runner

    def qemu_command(self, chardev: str) -> list[str]:
        return [self.program, "-machine", self.machine, "-nodefaults", "-display", "none", "-monitor", "none",
                "-no-reboot", "-nic", "none", "-icount", "shift=0", "-chardev", chardev,
                "-serial", "chardev:ser0", "-kernel", str(self.kernel)]

    def commands(self):
        # A paste-able form: QEMU listens on a fixed port (`--port socket://127.0.0.1:4444` to connect).
        return [self.qemu_command("socket,id=ser0,host=127.0.0.1,port=4444,server=on,wait=on,nodelay=on")]

    def open_session(self, boot_timeout: float = BOOT_TIMEOUT) -> Session:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        command = self.qemu_command(f"socket,id=ser0,fd={listener.fileno()},server=on,wait=on,nodelay=on")

        def connect(process, log_path):
            listener.close()  # QEMU holds the listening socket now; if it dies, connecting fails at once
            return SerialTransport(f"socket://127.0.0.1:{port}", on_gone=lambda: exit_text(process, log_path, "QEMU"))

        try:
            return start_session(command, "qemu", connect, boot_timeout, log_stdout=True,
                                  stdin=subprocess.DEVNULL, pass_fds=(listener.fileno(),))
        finally:
            listener.close()
