"""What every flash runner shares: capabilities, arguments, the Runner base class, tool runs and sessions.

Modelled on Zephyr's `west flash` runners: each runner has a `name`, `capabilities`, and a `create(board, build,
args)` class method that gathers and checks everything up front (programs, files, port, offsets), so `flash()`
never asks anything and a dry run can print the exact commands.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.boards import Board
from edgekit.build_folder import Build, image_flash_bytes
from edgekit.device import BOOT_TIMEOUT, Device
from edgekit.errors import EdgekitError, UsageError
from edgekit.processes import kill_tied, popen_tied, stop_tied

FLASH_TOOL_TIMEOUT = 600  # seconds; a flash tool that takes longer has hung


@dataclass(frozen=True)
class Capabilities:
    flash: bool = False  # can put an image on the device
    reset: bool = False  # resets the device after flashing
    serial: bool = False  # provides the device's serial line itself (emulator socket, process pipes)
    address: bool = False  # --port is the device's address for the runner (adb serial, ssh destination)
    benchmark: bool = False  # can run LiteRT's benchmark_model there (phones and Linux boards)


@dataclass
class RunnerArgs:
    port: str | None = None  # the board's serial port (esptool, arduino-cli) or a socket:// URL
    dry_run: bool = False
    extra: dict = field(default_factory=dict)


def require(program: str, hint: str) -> str:
    """The path of `program`, or one clear line saying how to install it."""
    path = shutil.which(program)
    if not path:
        raise EdgekitError(f"program {program} not found; install it with {hint}")
    return path


def require_module(module: str, hint: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise EdgekitError(f"Python module {module} not found; install it with {hint}")


class Runner:
    """One flash tool. Subclasses set `name`, `capabilities`, `install_hint` and implement `create`/`commands`."""

    name = ""
    capabilities = Capabilities()
    install_hint = ""

    def __init__(self, board: Board, build: Build, args: RunnerArgs):
        self.board, self.build, self.args = board, build, args
        self.settings = board.flash
        self.image_file: Path | None = None  # the image `flash` puts on the board (set by create)

    @classmethod
    def create(cls, board: Board, build: Build, args: RunnerArgs) -> "Runner":
        return cls(board, build, args)

    def commands(self) -> list[list[str]]:
        """The exact commands `flash` runs (what --dry-run prints)."""
        return []

    def flash(self, log=None) -> dict:
        for command in self.commands():
            run_tool(command, log)
        return {}

    def open_session(self, boot_timeout: float = BOOT_TIMEOUT) -> "Session":
        raise EdgekitError(f"runner {self.name} does not provide a serial line; pass --port with the board's "
                           "serial port")

    # helpers for subclasses

    def firmware(self, suffixes=None) -> Path:
        """The image: the manifest's `firmware` when edgekit compiled the project, else its `expected_firmware`
        (where a hand build puts it). With `suffixes`, the image or a sibling with one of them, in that order of
        preference (app.bin next to app.elf). A dry run takes the first candidate even if it is not there yet."""
        build = self.build
        path = build.image
        if path is None:
            raise EdgekitError(f"build folder {build.dir} has no compiled firmware (the manifest names none); "
                               "compile the project as its README.md says, or run edgekit build where the "
                               f"{self.board.name} toolchain is installed")
        candidates = [path] if not suffixes or path.suffix in suffixes else []
        candidates += [path.with_suffix(suffix) for suffix in suffixes or () if suffix != path.suffix]
        found = next((candidate for candidate in candidates if candidate.exists()), None)
        if found is not None or self.args.dry_run:
            self.image_file = found or candidates[0]
            return self.image_file
        if build.firmware is None:
            hint = build.manifest.get("build_hint") or "the build commands of its README.md"
            raise EdgekitError(f"{build.dir} is not built yet (no {candidates[0].relative_to(build.dir)}); build it "
                               f"first: {hint} (in {build.dir}, see its README.md)")
        if suffixes and path.suffix not in suffixes:
            raise EdgekitError(f"runner {self.name} needs a {' or '.join(suffixes)} image next to {path.name}; "
                               f"none in {path.parent}")
        raise EdgekitError(f"firmware {path} not found; rebuild with edgekit build")

    def need_port(self) -> str:
        if self.args.port:
            return self.args.port
        if self.args.dry_run:
            return "PORT"
        raise UsageError(f"runner {self.name} needs --port (the board's serial port, e.g. /dev/ttyUSB0 or "
                         "/dev/ttyACM0)")

    def check_size(self, image_bytes: int | None, limit: int | None = None, what: str = "flash") -> None:
        """Refuse, before touching the device, an image the board cannot hold."""
        limit = limit or self.board.flash_bytes
        if image_bytes is not None and limit and image_bytes > limit:
            raise EdgekitError(f"image needs {image_bytes:,} bytes of {what} but {self.board.name} has {limit:,}; "
                               "shrink the model (edgekit optimize) or pick a bigger board")


def run_tool(command: list[str], log=None, timeout: float = FLASH_TOOL_TIMEOUT) -> None:
    """Run a flash tool, its output going to `log` (stderr: --json stdout stays clean); one line on failure."""
    import threading

    tool = command[2] if command[1:2] == ["-m"] else Path(command[0]).name  # `python -m esptool` is esptool
    if log:
        log("$ " + shlex.join(command))
    tail = []
    try:
        process = popen_tied(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as error:
        raise EdgekitError(f"cannot run {command[0]}: {error.strerror or error}") from None

    def pump():
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail[:] = (tail + [line])[-5:]
                if log:
                    log(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout)
    except BaseException as error:  # a hung tool, or an interrupt: nothing keeps running
        kill_tied(process)
        if not isinstance(error, subprocess.TimeoutExpired):
            raise
        raise EdgekitError(f"{tool} did not finish within {timeout} s; check the board's "
                           "connection") from None
    finally:
        reader.join(timeout=1)
    if code != 0:
        telling = [line for line in tail if re.search(r"error|errno|fail|could not|cannot|not found", line, re.I)]
        last = (telling or tail or ["no output"])[-1].strip()
        raise EdgekitError(f"{tool} failed with exit status {code}: {last[:200]}")


class Session:
    """A connected device plus whatever must be stopped with it (the emulator, the host program)."""

    def __init__(self, device: Device, process: subprocess.Popen | None = None, cleanup=(), boot_lines=()):
        self.device = device
        self.process = process
        self._cleanup = list(cleanup)
        self.boot_lines = list(boot_lines)

    def close(self) -> None:
        try:
            self.device.close()
        finally:
            if self.process is not None:
                _stop(self.process)
            for path in self._cleanup:
                Path(path).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _stop(process: subprocess.Popen) -> None:
    stop_tied(process)


def start_session(command: list[str], kind: str, connect, boot_timeout: float, log_stdout: bool = False,
                   **popen) -> Session:
    """Start the program that is the device (emulator, host program) with its stderr (and stdout if `log_stdout`)
    in a temporary log, connect with `connect(process, log_path) -> Transport` and wait until it answers.
    Nothing outlives a failure: the process is stopped and the log removed."""
    _remove_stale_logs()
    fd, log_path = tempfile.mkstemp(prefix=f"edgekit-{kind}-{os.getpid()}-", suffix=".log")
    stdout = fd if log_stdout else popen.pop("stdout", None)
    try:
        process = popen_tied(command, stdout=stdout, stderr=fd, **popen)
    except OSError as error:
        os.unlink(log_path)
        raise EdgekitError(f"cannot start {command[0]}: {error}") from None
    finally:
        os.close(fd)
    transport = None
    try:
        transport = connect(process, log_path)
        device = Device(transport)
        boot = device.sync(boot_timeout)
    except BaseException:
        if transport is not None:
            transport.close()
        _stop(process)
        os.unlink(log_path)
        raise
    return Session(device, process, cleanup=[log_path], boot_lines=boot)


def _remove_stale_logs() -> None:
    """Session logs (edgekit-KIND-PID-*.log in TMPDIR) of edgekit processes that were killed before closing."""
    for path in Path(tempfile.gettempdir()).glob("edgekit-*-*-*.log"):
        match = re.fullmatch(r"edgekit-[a-z]+-(\d+)-.+\.log", path.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass  # alive (another user's), or not a pid


def boot_check(session: Session, started: float) -> dict:
    """What `flash` reports for runners that start the program: it booted and answered."""
    with session:
        info = session.device.info()
        result = {"booted": True, "boot_ms": round((time.monotonic() - started) * 1000, 1),
                  "backend": info.backend, "input_bytes": info.input_bytes, "output_bytes": info.output_bytes}
        failed = [line for line in session.boot_lines if line.startswith("e-")]
        if failed:
            raise EdgekitError(f"the device started but reported {failed[0][2:].strip('[]')}")
    return result


class ProgramRunner(Runner):
    """A runner whose device is a program it starts (emulator, host program): flashing is booting it once and
    checking that it answers."""

    def flash(self, log=None):
        started = time.monotonic()
        return boot_check(self.open_session(), started)


PROBE_IMAGES = (".elf", ".hex", ".bin")  # what pyOCD and OpenOCD program (a .bin at the board's flash_base)


class ToolRunner(Runner):
    """A runner that hands one image file to one program, given one setting of the board's [flash] table."""

    program = ""
    setting = ""  # the [flash] key the tool cannot do without
    suffixes = None  # image formats the tool takes, preferred first (None: the image as built)
    needs_port = False

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        if cls.setting not in board.flash:
            raise EdgekitError(f"board {board.name} has no {cls.setting} in its [flash] settings")
        runner.port = runner.need_port() if cls.needs_port else None
        runner.image = runner.firmware(suffixes=cls.suffixes)  # an unbuilt project says so before a missing tool
        if not args.dry_run:
            require(cls.program, cls.install_hint)
        runner.check_size(image_flash_bytes(build, runner.image))
        return runner

    def bin_address(self) -> str | None:
        """Where a raw .bin goes (the board's flash_base); ELF and HEX images carry their own addresses."""
        return hex(int(self.settings.get("flash_base", 0))) if self.image.suffix == ".bin" else None
