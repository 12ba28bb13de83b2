"""Putting a build on its board: one small runner class per flash tool, one interface.

Modelled on Zephyr's `west flash` runners: each runner has a `name`, `capabilities`, and a `create(board, build,
args)` class method that gathers and checks everything up front (programs, files, port, offsets), so `flash()`
never asks anything and a dry run can print the exact commands. Boards name their runners as data
(`[flash] default_runner`, `runners` and settings in boards/*.toml); no code switches on board names.

Runners that provide the serial line themselves (`qemu`: the emulator's UART on a loopback socket; `host`: the
program's stdin/stdout) also open a `Session`, which `edgekit profile` uses and closes, so no emulator or host
program outlives the command.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.boards import Board, load_board
from edgekit.device import BOOT_TIMEOUT, Device, PipeTransport, SerialTransport, exit_text
from edgekit.errors import EdgekitError, UsageError
from edgekit.processes import kill_tied, popen_tied, stop_tied

MANIFEST = "edgekit-build.json"
FLASH_TOOL_TIMEOUT = 600  # seconds; a flash tool that takes longer has hung


# -- the build folder ---------------------------------------------------------------------------------------


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


def load_build(build_dir) -> Build:
    folder = Path(build_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise EdgekitError(f"{folder} is not a build folder (no {MANIFEST}); expected the output of edgekit build")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EdgekitError(f"{path} is not valid JSON ({error}); rebuild with edgekit build") from None
    if not isinstance(manifest, dict) or "board" not in manifest:
        raise EdgekitError(f"{path} names no board; rebuild with edgekit build")
    return Build(folder, manifest, load_board(str(manifest["board"])))


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


# -- runners ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    flash: bool = False  # can put an image on the device
    reset: bool = False  # resets the device after flashing
    serial: bool = False  # provides the device's serial line itself (emulator socket, process pipes)


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


def _require_module(module: str, hint: str) -> None:
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
            _run(command, log)
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


def _run(command: list[str], log=None, timeout: float = FLASH_TOOL_TIMEOUT) -> None:
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


def _start_session(command: list[str], kind: str, connect, boot_timeout: float, log_stdout: bool = False,
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


def _boot_check(session: Session, started: float) -> dict:
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
        return _boot_check(self.open_session(), started)


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
            return _start_session(command, "qemu", connect, boot_timeout, log_stdout=True,
                                  stdin=subprocess.DEVNULL, pass_fds=(listener.fileno(),))
        finally:
            listener.close()


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
        return _start_session([str(self.program.resolve())], "host", connect, boot_timeout, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, cwd=self.build.dir)


class EsptoolRunner(Runner):
    """ESP32 family: bootloader, partition table and app at the chip's offsets, with esptool v5's write-flash."""

    name = "esptool"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "pip install esptool"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        if not args.dry_run:
            _require_module("esptool", cls.install_hint)
        settings = board.flash
        runner.port = runner.need_port()
        runner.chip = str(settings.get("chip", board.name))
        images = build.manifest.get("flash_images")
        from_idf = _idf_flash_files(build.dir / build.manifest.get("expected_flasher_args",
                                                                   "build/flasher_args.json"))
        if from_idf:  # what `idf.py build` says it wrote, at which offsets: the most exact source
            runner.images = from_idf
            app = max(from_idf)[1]
        elif images:  # [{offset, file}] written by the build, when it knows better than the defaults
            runner.images = [(int(str(i["offset"]), 0), build.dir / i["file"]) for i in images]
            app = max(runner.images)[1]
        else:
            app = runner.firmware(suffixes=(".bin",))
            root = app.parent
            runner.images = [
                (int(settings.get("bootloader_offset", 0x1000)), root / "bootloader" / "bootloader.bin"),
                (int(settings.get("partition_table_offset", 0x8000)), root / "partition_table" / "partition-table.bin"),
                (int(settings.get("app_offset", 0x10000)), app),
            ]
        runner.image_file = app
        if not args.dry_run:
            for _, path in runner.images:
                if not path.is_file():
                    raise EdgekitError(f"{path} not found; build the ESP-IDF project first (idf.py build)")
            runner.check_size(app.stat().st_size, int(settings.get("app_partition_bytes", board.flash_bytes)),
                              "app partition")
        return runner

    def commands(self):
        baud = str(self.settings.get("flash_baud", 460800))
        command = [sys.executable, "-m", "esptool", "--chip", self.chip, "--port", self.port, "--baud", baud,
                   "write-flash"]
        for offset, path in self.images:
            command += [hex(offset), str(path)]
        return [command]


def _idf_flash_files(path: Path) -> list[tuple[int, Path]] | None:
    """[(offset, file)] from ESP-IDF's build/flasher_args.json, sorted by offset, or None without one."""
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["flash_files"]
        return sorted((int(offset, 0), path.parent / name) for offset, name in files.items())
    except (json.JSONDecodeError, KeyError, ValueError, AttributeError, TypeError):
        raise EdgekitError(f"{path} is not ESP-IDF's flasher_args.json; rebuild with idf.py build") from None


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


class PyocdRunner(ToolRunner):
    """STM32 and nRF boards through a CMSIS-DAP/ST-Link probe."""

    name = program = "pyocd"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "pip install pyocd"
    setting = "pyocd_target"
    suffixes = PROBE_IMAGES

    def commands(self):
        command = ["pyocd", "flash", "--target", str(self.settings["pyocd_target"])]
        if self.bin_address():
            command += ["--base-address", self.bin_address()]
        return [command + [str(self.image)]]


class OpenocdRunner(ToolRunner):
    """Any board OpenOCD knows, with the board file's OpenOCD config."""

    name = program = "openocd"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "apt-get install openocd"
    setting = "openocd_config"
    suffixes = PROBE_IMAGES

    @classmethod
    def create(cls, board, build, args):
        runner = super().create(board, build, args)
        if any(c in str(runner.image) for c in "{}\\"):
            raise EdgekitError(f"firmware path {runner.image} contains braces or backslashes, which OpenOCD's "
                               "Tcl cannot take; move the build folder")
        return runner

    def commands(self):
        address = f" {self.bin_address()}" if self.bin_address() else ""
        program = f"program {{{self.image}}}{address} verify reset exit"
        return [["openocd", "-f", str(self.settings["openocd_config"]), "-c", program]]


class Uf2Runner(Runner):
    """RP2040 and friends: copy a UF2 image to the bootloader's mass-storage volume, found by its label."""

    name = "uf2"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "nothing (hold BOOTSEL while plugging the board in)"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        runner.label = str(board.flash.get("uf2_volume_label", "RPI-RP2"))
        image = runner.firmware(suffixes=(".uf2", ".bin"))
        runner.source = image
        runner.check_size(image_flash_bytes(build, image))
        volume = find_volume(runner.label)
        if volume is None and not args.dry_run:
            raise EdgekitError(f"no mounted volume labelled {runner.label}; hold BOOTSEL while plugging the board in "
                               "and let the system mount it")
        runner.volume = volume or Path(f"/media/{runner.label}")
        return runner

    def commands(self):
        return [["cp", str(self.source), str(self.volume / (self.source.stem + ".uf2"))]]

    def flash(self, log=None):
        target = self.volume / (self.source.stem + ".uf2")
        if log:
            log("$ " + shlex.join(self.commands()[0]))
        data = self.source.read_bytes()
        if self.source.suffix != ".uf2":
            data = bin_to_uf2(data, int(self.settings.get("flash_base", 0x10000000)),
                              int(self.settings.get("uf2_family_id", 0)))
        with open(target, "wb") as f:  # the board reboots once the last block is written
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return {"copied_to": str(target), "bytes": len(data)}


def find_volume(label: str) -> Path | None:
    """The mount point of a volume with this label (Linux /dev/disk/by-label + /proc/mounts, or macOS /Volumes)."""
    by_label = Path("/dev/disk/by-label") / label
    devices = {os.path.realpath(by_label)} if by_label.exists() else set()
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    for line in mounts:
        parts = line.split()
        if len(parts) < 2:
            continue
        mount = Path(parts[1].replace("\\040", " "))
        if os.path.realpath(parts[0]) in devices or mount.name == label:
            return mount
    mac = Path("/Volumes") / label
    return mac if mac.is_dir() else None


def bin_to_uf2(data: bytes, base: int, family_id: int) -> bytes:
    """A raw flash image as UF2 blocks (512 bytes each, 256 payload bytes, family id flag when given)."""
    payload = 256
    blocks = (len(data) + payload - 1) // payload
    out = bytearray()
    for n in range(blocks):
        chunk = data[n * payload:(n + 1) * payload].ljust(payload, b"\0")
        flags = 0x2000 if family_id else 0
        header = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, flags, base + n * payload, payload, n, blocks,
                             family_id)
        out += header + chunk.ljust(476, b"\0") + struct.pack("<I", 0x0AB16F30)
    return bytes(out)


class ArduinoCliRunner(ToolRunner):
    """Arduino boards: arduino-cli upload of the compiled binary, with the board's FQBN."""

    name = program = "arduino-cli"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "the installer at https://arduino.github.io/arduino-cli (then arduino-cli core install ...)"
    setting = "fqbn"
    needs_port = True

    def commands(self):
        return [["arduino-cli", "upload", "--port", self.port, "--fqbn", str(self.settings["fqbn"]),
                 "--input-file", str(self.image)]]


RUNNERS = {cls.name: cls for cls in (QemuRunner, HostRunner, EsptoolRunner, PyocdRunner, OpenocdRunner,
                                     Uf2Runner, ArduinoCliRunner)}


def runner_class(build: Build, name: str | None = None) -> type[Runner]:
    """The runner the board names (or `name`), checked against the board's list."""
    board = build.board
    name = name or build.manifest.get("runner") or board.default_runner
    if not name:
        raise EdgekitError(f"board {board.name} names no flash runner; pass --runner "
                           f"({', '.join(RUNNERS)})")
    if name not in RUNNERS:
        raise UsageError(f"unknown runner '{name}'; expected one of: {', '.join(RUNNERS)}")
    allowed = board.flash.get("runners") or [board.default_runner]
    if name not in allowed:
        raise UsageError(f"board {board.name} cannot be flashed with {name}; its runners are: {', '.join(allowed)}")
    return RUNNERS[name]


def create_runner(build: Build, name: str | None = None, port: str | None = None, dry_run: bool = False) -> Runner:
    """The runner the board names (or `name`), created with everything it needs."""
    return runner_class(build, name).create(build.board, build, RunnerArgs(port=port, dry_run=dry_run))


def flash_build(build_dir, port: str | None = None, runner: str | None = None, dry_run: bool = False,
                log=None) -> dict:
    """Put the build on its board (qemu/host: boot it and check it answers). Returns a report dict."""
    build = load_build(build_dir)
    chosen = create_runner(build, runner, port, dry_run)
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
    """A session with the build's device: the given port, or the runner's own line (emulator, host program)."""
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
