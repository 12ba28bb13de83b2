"""The host side of the device protocol (docs/protocol.md), one client for every board.

A Transport moves bytes (a serial port or QEMU's socket through pyserial's `serial_for_url`, or the pipes of the
host board's program); `Device` speaks the protocol on top of it and never knows which. Every read has a deadline,
so a device that stops answering, resets or sends garbage ends in one clear EdgekitError, never a hang.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from dataclasses import dataclass, field

from edgekit.errors import EdgekitError

CMD_MAX = 2048  # EK_CMD_MAX of the application: longer commands are discarded by the device
UPLOAD_CHUNK = 512  # input bytes per `db` command: 1,024 hex digits, well under CMD_MAX
MAX_LINE = 1 << 22  # longest line kept (ek-out of a 2 MB output); longer runs of bytes are garbage
BOOT_TIMEOUT = 15.0  # seconds from connect to the first answer (TFLite Micro init on a slow board)
COMMAND_TIMEOUT = 5.0  # seconds for a command that does not run the model
RESEND_AFTER = 2.0  # seconds of silence after which `sync` sends its `name` again


class DeviceError(EdgekitError):
    """The device misbehaved: no answer, reset, closed connection, or an e-[...] line."""


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


# -- transports: read with timeout, write, close --------------------------------------------------------------


class Transport:
    """Bytes to and from a device. `read` returns what arrived within `timeout` (b"" if nothing) and raises
    DeviceError when the other end is gone."""

    description = "device"

    def read(self, timeout: float) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def gone_reason(self) -> str:
        """Why the other end went away, when the transport knows (e.g. the emulator's exit status)."""
        return ""


class SerialTransport(Transport):
    """A pyserial port: `/dev/ttyACM0`, `COM3`, `socket://127.0.0.1:PORT` (QEMU), `rfc2217://...`."""

    def __init__(self, url: str, baud: int = 115200, on_gone=None):
        import serial

        self.description = url
        self._on_gone = on_gone  # callable giving a reason, e.g. the emulator's exit status
        try:
            port = serial.serial_for_url(url, baudrate=baud or 115200, timeout=0, do_not_open=True)
            # Leave DTR/RTS low: on ESP32 boards they drive reset/boot, and opening the port must not reset it.
            port.dtr = False
            port.rts = False
            # open() flushes what already arrived; keep it: it may hold the boot banner (e.g. an init error).
            port.reset_input_buffer = lambda: None
            port.open()
        except (serial.SerialException, ValueError, OSError) as error:
            raise DeviceError(f"cannot open serial port {url}: {_short(error)}; expected a port such as "
                              "/dev/ttyACM0 or socket://127.0.0.1:PORT") from None
        self._port = port

    def read(self, timeout: float) -> bytes:
        import serial

        try:
            self._port.timeout = max(0.0, timeout)
            first = self._port.read(1)
            if not first:
                return b""
            self._port.timeout = 0
            return first + self._port.read(65536)
        except (serial.SerialException, OSError) as error:
            reason = self.gone_reason() or _short(error)
            raise DeviceError(f"lost the connection to {self.description}: {reason}") from None

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as error:
            reason = self.gone_reason() or _short(error)
            raise DeviceError(f"lost the connection to {self.description}: {reason}") from None

    def close(self) -> None:
        port = self._port
        sock = getattr(port, "_socket", None)
        if sock is not None:
            # pyserial's socket:// close sleeps 0.3 s "for quick reconnects": close the socket ourselves.
            try:
                sock.close()
            except OSError:
                pass
            port._socket = None
            port.is_open = False
            return
        try:
            port.close()
        except Exception:  # closing a port whose device vanished can fail in many ways; it is closed either way
            pass

    def gone_reason(self) -> str:
        return self._on_gone() if self._on_gone else ""


class PipeTransport(Transport):
    """The stdin/stdout pipes of a process speaking the protocol (the host board's program)."""

    def __init__(self, process: subprocess.Popen, description: str, stderr_path=None):
        self.process = process
        self.description = description
        self._stderr_path = stderr_path
        self._out = process.stdout.fileno()
        self._in = process.stdin.fileno()

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._out], [], [], max(0.0, timeout))
        if not ready:
            return b""
        data = os.read(self._out, 65536)
        if not data:
            raise DeviceError(f"{self.description} closed its output: {self.gone_reason()}")
        return data

    def write(self, data: bytes) -> None:
        try:
            os.write(self._in, data)
        except OSError:
            raise DeviceError(f"{self.description} stopped reading its input: {self.gone_reason()}") from None

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def gone_reason(self) -> str:
        return exit_text(self.process, self._stderr_path, "it")


def exit_text(process: subprocess.Popen, stderr_path=None, program: str = "it") -> str:
    """How a process ended, with the last line it wrote to its log (stderr) when there is one."""
    try:
        code = process.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        return f"{program} is still running"
    tail = ""
    if stderr_path and os.path.exists(stderr_path):
        with open(stderr_path, "rb") as f:
            lines = f.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        tail = f" ({lines[-1].strip()[:200]})" if lines else ""
    if code < 0:
        return f"{program} was killed by signal {-code}{tail}"
    return f"{program} exited with status {code}{tail}"


def _short(error) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


# -- the protocol ---------------------------------------------------------------------------------------------


@dataclass
class DeviceInfo:
    backend: str = ""
    input_bytes: int = 0
    input_type: str = ""
    output_bytes: int = 0
    output_type: str = ""
    layers: int = 0
    ticks_per_second: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Inference:
    """One `infer N W` answer."""

    runs: int
    lap_us: int | None  # microseconds between the two m-lap-us lines (all N timed runs), None if absent
    results: list[int]


_PRINTABLE = re.compile(rb"[\x20-\x7e]+")


class Device:
    """A connected device. Each command is sent, and lines are read until `m-ready`, within a deadline."""

    def __init__(self, transport: Transport, timeout: float = COMMAND_TIMEOUT):
        self.transport = transport
        self.timeout = timeout
        self._buffer = bytearray()
        self.skipped_lines = 0  # garbage seen (lines that are not m-/e- lines)

    # framing

    def _next_line(self, deadline: float, timeout: float, during: str) -> str:
        """The next protocol line (m-/e-), skipping garbage; DeviceError when the deadline passes."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                raw = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]
                line = _clean(raw)
                if line is not None:
                    return line
                self.skipped_lines += 1
                continue
            if len(self._buffer) > MAX_LINE:
                self._buffer.clear()  # a flood without newlines: drop it, keep waiting for real lines
                self.skipped_lines += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"no answer from {self.transport.description} to {during} within "
                                  f"{timeout:g} s; expected lines ending with m-ready")
            self._buffer += self.transport.read(min(left, 0.25))

    def command(self, text: str, timeout: float | None = None, check: bool = True) -> list[str]:
        """Send `text%` and return the answer lines before `m-ready`; raise on e-[...] lines when `check`."""
        if "%" in text or len(text) + 1 > CMD_MAX:
            raise DeviceError(f"command '{text[:32]}' is not a valid device command")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        during = f"'{_describe(text)}'"
        self.transport.write(text.encode("ascii") + b"%")
        lines = []
        while True:
            line = self._next_line(deadline, timeout, during)
            if line == "m-ready":
                break
            if line == "m-init-done":
                raise DeviceError(f"{self.transport.description} reset during {during} (it printed m-init-done "
                                  "again); check its power supply, stack size and watchdog")
            lines.append(line)
        errors = [line for line in lines if line.startswith("e-")]
        if check and errors:
            raise DeviceError(f"{self.transport.description} answered {during} with {_error_text(errors[0])}")
        return lines

    def sync(self, timeout: float = BOOT_TIMEOUT) -> list[str]:
        """Wait until the device answers (after its boot banner, if any): send `name%` and read until its
        m-ready. Returns the boot lines seen before the answer (e.g. an `e-[init failed: ...]`)."""
        deadline = time.monotonic() + timeout
        self.transport.write(b"name%")
        resend = time.monotonic() + RESEND_AFTER
        boot = []
        named = False
        while True:
            try:
                line = self._next_line(min(deadline, resend), timeout, "'name' (waiting for the device to start)")
            except DeviceTimeout:
                if time.monotonic() >= deadline:
                    raise
                # A board still booting (reset by its flash tool) may have missed the command: ask again.
                # A second answer, if both arrive, is drained below.
                self.transport.write(b"name%")
                resend = time.monotonic() + RESEND_AFTER
                continue
            if line.startswith("m-name-dut-"):
                named = True
            elif line == "m-ready":
                if named:
                    break
            elif not named and line != "m-init-done":
                boot.append(line)
            elif line.startswith("e-"):
                raise DeviceError(f"{self.transport.description} answered 'name' with {_error_text(line)}")
        self._drain()
        return boot

    def _drain(self, quiet: float = 0.05, limit: float = 1.0) -> None:
        """Drop what arrives until the line is quiet, so a stale answer cannot be taken for the next one."""
        end = time.monotonic() + limit
        self._buffer.clear()
        while time.monotonic() < end and self.transport.read(quiet):
            pass

    # commands

    def info(self) -> DeviceInfo:
        info = DeviceInfo()
        for line in self.command("ek-info"):
            body = _strip_prefix(line, "m-ek-info-")
            if body is None:
                continue
            key, _, value = body.partition("-")
            if key == "backend":
                info.backend = value
            elif key in ("input", "output"):
                size, _, kind = value.partition("-")
                setattr(info, f"{key}_bytes", _int(size, line))
                setattr(info, f"{key}_type", kind)
            elif key == "layers":
                info.layers = _int(value, line)
            elif key == "tps":
                info.ticks_per_second = _int(value, line)
            else:
                info.extra[key] = value
        if not info.input_bytes:
            raise DeviceError(f"{self.transport.description} did not report its input size (ek-info); "
                              "expected an edgekit application")
        return info

    def identity(self) -> dict:
        """{'firmware': 'edgekit 0.1.0', 'model': name} from MLPerf Tiny's `profile` command."""
        found = {"firmware": None, "model": None}
        for line in self.command("profile", check=False):
            for key, prefix in (("firmware", "m-profile-"), ("model", "m-model-")):
                body = _strip_prefix(line, prefix)
                if body is not None:
                    found[key] = body.strip("[]")
        return found

    def memory(self) -> dict:
        """{'arena': reserved, 'arena_used': used, 'stack': peak} in bytes (None when not reported)."""
        memory = {"arena": None, "arena_used": None, "stack": None}
        for line in self.command("ek-mem"):
            body = _strip_prefix(line, "m-ek-mem-")
            if body is None:
                continue
            if body.startswith("arena-used-"):
                memory["arena_used"] = _int(body[len("arena-used-"):], line)
            elif body.startswith("arena-"):
                memory["arena"] = _int(body[len("arena-"):], line)
            elif body.startswith("stack-"):
                memory["stack"] = _int(body[len("stack-"):], line)
        return memory

    def load_input(self, data: bytes, chunk: int = UPLOAD_CHUNK, on_chunk=None) -> None:
        """Upload one input tensor with `db` commands, one chunk per m-ready (the flow control)."""
        lines = self.command(f"db load {len(data)}")
        if not any(line.startswith("m-[Expecting") for line in lines):
            raise DeviceError(f"{self.transport.description} did not accept 'db load {len(data)}'")
        chunk = max(1, min(chunk, (CMD_MAX - 8) // 2))
        done = False
        for start in range(0, len(data), chunk):
            lines = self.command("db " + data[start:start + chunk].hex())
            done = done or any(line == "m-load-done" for line in lines)
            if on_chunk:
                on_chunk(min(len(data), start + chunk))
        if not done:
            raise DeviceError(f"{self.transport.description} did not confirm the upload of {len(data)} bytes "
                              "(no m-load-done)")

    def infer(self, runs: int = 1, warmup: int = 0, timeout: float | None = None) -> Inference:
        lines = self.command(f"infer {int(runs)} {int(warmup)}", timeout=timeout)
        laps = [_int(line[len("m-lap-us-"):], line) for line in lines if line.startswith("m-lap-us-")]
        if "m-infer-done" not in lines:
            raise DeviceError(f"{self.transport.description} did not finish 'infer {runs} {warmup}' "
                              "(no m-infer-done)")
        lap = (laps[-1] - laps[0]) % (1 << 32) if len(laps) >= 2 else None
        results = []
        for line in lines:
            if line.startswith("m-results-"):
                results = _int_list(line[len("m-results-"):], line)
        return Inference(runs, lap, results)

    def ticks(self) -> tuple[int, int]:
        """(ticks, N) of the last timed run of N inferences."""
        for line in self.command("ek-ticks"):
            body = _strip_prefix(line, "m-ek-ticks-")
            if body is not None:
                ticks, _, runs = body.partition("-")
                return _int(ticks, line), _int(runs, line)
        raise DeviceError(f"{self.transport.description} did not answer ek-ticks")

    def layers(self) -> list[tuple[int, str, int]]:
        """[(index, op name, ticks)] of the last inference."""
        layers = []
        for line in self.command("ek-layers"):
            match = re.fullmatch(r"m-ek-layer-(\d+)-(.+)-(\d+)", line)
            if match:
                layers.append((int(match.group(1)), match.group(2), int(match.group(3))))
        return layers

    def output(self) -> bytes:
        """The raw bytes of the output tensor of the last inference (ek-out)."""
        for line in self.command("ek-out"):
            body = _strip_prefix(line, "m-ek-out-")
            if body is not None:
                try:
                    return bytes.fromhex(body)
                except ValueError:
                    raise DeviceError(f"{self.transport.description} sent an ek-out line that is not hex") from None
        raise DeviceError(f"{self.transport.description} did not answer ek-out")

    def close(self) -> None:
        self.transport.close()


def _clean(raw: bytes) -> str | None:
    """A protocol line from raw bytes, or None for garbage. Non-printable bytes (line noise, a UART
    glitch at reset) are dropped, and a line counts only if what is left starts with m- or e-."""
    text = b"".join(_PRINTABLE.findall(raw)).decode("ascii").strip()
    if text.startswith(("m-", "e-")):
        return text
    return None


def _strip_prefix(line: str, prefix: str) -> str | None:
    return line[len(prefix):] if line.startswith(prefix) else None


def _int(text: str, line: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DeviceError(f"cannot read the number in the device's line '{line[:80]}'") from None


def _int_list(text: str, line: str) -> list[int]:
    text = text.strip().strip("[]")
    if not text:
        return []
    try:
        return [int(round(float(v))) if "." in v else int(v) for v in text.split(",")]
    except ValueError:
        raise DeviceError(f"cannot read the results in the device's line '{line[:80]}'") from None


def _describe(command: str) -> str:
    return command if len(command) <= 40 else command[:20] + "..."


def _error_text(line: str) -> str:
    return line[2:].strip("[]")[:200] if line.startswith("e-") else line[:200]
