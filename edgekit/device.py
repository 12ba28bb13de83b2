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
# Limits on one answer (docs/protocol.md, "Limits"): a device that floods is refused in one line, in linear time.
REPLY_LINES = 64  # protocol lines of an answer other than ek-layers' (infer has 7)
LAYER_LINE_SLACK = 16  # ek-layers lines accepted beyond the layers ek-info announced
LAYER_LINE_BYTES = 128  # 'm-ek-layer-', index, a name of up to 48 characters, 20-digit ticks, CRLF
REPLY_BYTES = 1 << 16  # bytes of a short answer (name, profile, ek-info, ek-mem, ek-ticks, db), garbage included
MAX_LAYERS = 65535  # ek-info layers is a uint16_t on the device
U32_MAX, U64_MAX = (1 << 32) - 1, (1 << 64) - 1
TYPE_BYTES = {"i8": 1, "u8": 1, "i16": 2, "i32": 4, "f32": 4}  # ek_type_t names


class DeviceError(EdgekitError):
    """The device misbehaved: no answer, reset, closed connection, or an e-[...] line."""


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class DeviceReplyError(DeviceError):
    """An answer that breaks the protocol or what ek-info announced (a field out of range, too many lines)."""


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
        self._scanned = 0  # bytes of _buffer already searched for a newline: each byte is searched once
        self.consumed = 0  # bytes taken from the transport so far (lines and garbage)
        self._start = 0  # `consumed` when the current command was sent
        self.skipped_lines = 0  # garbage seen (lines that are not m-/e- lines)
        self.announced: DeviceInfo | None = None  # the last ek-info answer: later answers are checked against it

    # framing

    def _next_line(self, deadline: float, timeout: float, during: str, budget: int | None = None,
                   note: str = "") -> str:
        """The next protocol line (m-/e-), skipping garbage; DeviceError when the deadline passes or more than
        `budget` bytes (counted in `consumed`) arrive. Linear: each byte is searched for a newline once."""
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline >= 0:
                raw = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]  # CPython drops a bytearray's prefix without moving the rest
                self._scanned = 0
                self.consumed += newline + 1
                line = _clean(raw)
                if line is not None:
                    return line
                self.skipped_lines += 1
                continue
            self._scanned = len(self._buffer)
            if len(self._buffer) > MAX_LINE:
                self.consumed += len(self._buffer)
                self._buffer.clear()  # a flood without newlines: drop it, keep waiting for real lines
                self._scanned = 0
                self.skipped_lines += 1
            if budget is not None and self.consumed + len(self._buffer) > budget:
                raise DeviceReplyError(f"{self.transport.description} sent more than {_size(budget - self._start)} "
                                       f"in answer to {during}; expected a shorter answer (docs/protocol.md, Limits)")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"no answer from {self.transport.description} to {during} within "
                                    f"{timeout:g} s{note}; expected lines ending with m-ready")
            self._buffer += self.transport.read(min(left, 0.25))

    def command(self, text: str, timeout: float | None = None, check: bool = True, max_lines: int = REPLY_LINES,
                max_bytes: int = REPLY_BYTES, note: str = "", stages: dict | None = None) -> list[str]:
        """Send `text%` and return the answer lines before `m-ready`; raise on e-[...] lines when `check`.

        At most `max_lines` protocol lines and `max_bytes` bytes (garbage included) are accepted. `stages` maps a
        line prefix to (seconds, note): such a line restarts the deadline (the phases of `infer`); `note` says
        in the timeout's error line what the seconds are for.
        """
        if "%" in text or len(text) + 1 > CMD_MAX:
            raise DeviceError(f"command '{text[:32]}' is not a valid device command")
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        during = f"'{_describe(text)}'"
        self.transport.write(text.encode("ascii") + b"%")
        self._start = self.consumed
        budget = self.consumed + max_bytes
        lines = []
        while True:
            line = self._next_line(deadline, timeout, during, budget, note)
            if line == "m-ready":
                break
            if line == "m-init-done":
                raise DeviceError(f"{self.transport.description} reset during {during} (it printed m-init-done "
                                  "again); check its power supply, stack size and watchdog")
            lines.append(line)
            if len(lines) > max_lines:
                raise DeviceReplyError(f"{self.transport.description} sent more than {max_lines} lines in answer "
                                       f"to {during}; expected at most {max_lines} (docs/protocol.md, Limits)")
            for prefix, (seconds, what) in (stages or {}).items():
                if line.startswith(prefix):
                    timeout, note = seconds, what
                    deadline = time.monotonic() + timeout
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
        self.consumed += len(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        while time.monotonic() < end and self.transport.read(quiet):
            pass

    # commands

    def info(self) -> DeviceInfo:
        """ek-info, checked: sizes and counts are whole numbers in the protocol's ranges, each key once."""
        info = DeviceInfo()
        seen = set()
        for line in self.command("ek-info"):
            body = _strip_prefix(line, "m-ek-info-")
            if body is None:
                continue
            key, _, value = body.partition("-")
            if key in seen:
                raise DeviceReplyError(f"{self.transport.description} sent ek-info {key} twice; expected each "
                                       "ek-info line once")
            seen.add(key)
            if key == "backend":
                info.backend = value
            elif key in ("input", "output"):
                size, _, kind = value.partition("-")
                setattr(info, f"{key}_bytes", _number(size, f"ek-info {key} bytes", line, U32_MAX))
                if kind not in TYPE_BYTES:
                    raise DeviceReplyError(f"ek-info {key} type is '{kind[:16]}' (line '{line[:80]}'); expected "
                                           f"one of {', '.join(TYPE_BYTES)}")
                setattr(info, f"{key}_type", kind)
            elif key == "layers":
                info.layers = _number(value, "ek-info layers", line, MAX_LAYERS)
            elif key == "tps":
                info.ticks_per_second = _number(value, "ek-info tps", line, U32_MAX)
            else:
                info.extra[key] = value
        if not info.input_bytes:
            raise DeviceError(f"{self.transport.description} did not report its input size (ek-info); "
                              "expected an edgekit application")
        self.announced = info
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
            for key, prefix in (("arena_used", "arena-used-"), ("arena", "arena-"), ("stack", "stack-")):
                if body.startswith(prefix):
                    if memory[key] is not None:
                        raise DeviceReplyError(f"{self.transport.description} sent ek-mem {prefix[:-1]} twice; "
                                               "expected each ek-mem line once")
                    memory[key] = _number(body[len(prefix):], f"ek-mem {prefix[:-1]} bytes", line)
                    break
        if memory["arena"] and memory["arena_used"] is not None and memory["arena_used"] > memory["arena"]:
            raise DeviceReplyError(f"ek-mem arena-used is {memory['arena_used']} bytes, more than the "
                                   f"{memory['arena']} bytes of the arena; expected at most the arena's size")
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

    def infer(self, runs: int = 1, warmup: int = 0, timeout: float | None = None,
              per_inference: float | None = None, floor: float = COMMAND_TIMEOUT, basis: str = "") -> Inference:
        """`infer N W`. With `per_inference` (seconds), each phase has its own deadline: the W warm-ups until
        m-warmup-done, the N timed runs from m-infer-start-N, each max(floor, count x per_inference); so a
        device that hangs in its first inference is given up on after one phase, not after W + N inferences.
        `basis` says in the timeout's error line where the seconds come from ("0.2 s each: ..."). Without it, `timeout` (default
        the device's) bounds the whole answer."""
        runs, warmup = int(runs), int(warmup)
        stages, note = None, ""
        if per_inference is not None:
            each = basis or f"{per_inference:.3g} s each"

            def phase(count: int, kind: str) -> tuple[float, str]:
                seconds = max(floor, count * per_inference)
                least = f", at least {floor:g} s" if count * per_inference < floor else ""
                return seconds, f" for {count} {kind} inference{'s' * (count != 1)} ({each}{least})"

            warm, note = phase(warmup, "warm-up")
            stages = {"m-warmup-start-": (warm, note), "m-infer-start-": phase(runs, "timed")}
            timeout = warm
        lines = self.command(f"infer {runs} {warmup}", timeout=timeout, max_bytes=self._output_reply_bytes(),
                             note=note, stages=stages)
        laps = [_number(line[len("m-lap-us-"):], "m-lap-us", line, U32_MAX)
                for line in lines if line.startswith("m-lap-us-")]
        if "m-infer-done" not in lines:
            raise DeviceError(f"{self.transport.description} did not finish 'infer {runs} {warmup}' "
                              "(no m-infer-done)")
        if len(laps) > 2:
            raise DeviceReplyError(f"{self.transport.description} sent {len(laps)} m-lap-us lines to "
                                   f"'infer {runs} {warmup}'; expected 2")
        lap = (laps[-1] - laps[0]) % (1 << 32) if len(laps) >= 2 else None
        results = []
        for line in lines:
            if line.startswith("m-results-"):
                results = _int_list(line[len("m-results-"):], line)
        elements = self._output_elements()
        if results and elements is not None and len(results) != elements:
            raise DeviceReplyError(f"m-results lists {len(results)} values; expected {elements}, the output "
                                   "elements ek-info announced")
        return Inference(runs, lap, results)

    def ticks(self) -> tuple[int, int]:
        """(ticks, N) of the last timed run of N inferences."""
        for line in self.command("ek-ticks"):
            body = _strip_prefix(line, "m-ek-ticks-")
            if body is not None:
                ticks, _, runs = body.partition("-")
                return _number(ticks, "ek-ticks ticks", line), _number(runs, "ek-ticks runs", line, U32_MAX)
        raise DeviceError(f"{self.transport.description} did not answer ek-ticks")

    def layers(self) -> list[tuple[int, str, int]]:
        """[(index, op name, ticks)] of the last inference, checked against ek-info: indices below the layers
        announced, each once, all or none of them. At most announced + LAYER_LINE_SLACK lines are read."""
        announced = self.announced.layers if self.announced else None
        cap = (MAX_LAYERS if announced is None else announced) + LAYER_LINE_SLACK
        layers = []
        seen = set()
        for line in self.command("ek-layers", max_lines=cap, max_bytes=REPLY_BYTES + cap * LAYER_LINE_BYTES):
            body = _strip_prefix(line, "m-ek-layer-")
            if body is None:
                continue
            index, _, rest = body.partition("-")
            name, _, ticks = rest.rpartition("-")
            index = _number(index, "ek-layer index", line, MAX_LAYERS - 1)
            if name.endswith("-") or not name:  # 'NAME--5': negative ticks; nothing between the dashes
                raise DeviceReplyError(f"ek-layer ticks or name is not readable in line '{line[:80]}'; expected "
                                       "m-ek-layer-<index>-<op name>-<ticks>")
            ticks = _number(ticks, "ek-layer ticks", line)
            if announced is not None and index >= announced:
                raise DeviceReplyError(f"ek-layer index {index} is out of range: ek-info announced {announced} "
                                       f"layers (0..{announced - 1})")
            if index in seen:
                raise DeviceReplyError(f"ek-layer index {index} appears twice in the answer to ek-layers; "
                                       "expected each layer once")
            seen.add(index)
            layers.append((index, name, ticks))
        if layers and announced is not None and len(layers) != announced:
            raise DeviceReplyError(f"ek-layers listed {len(layers)} layers; expected the {announced} layers "
                                   "ek-info announced")
        return layers

    def output(self) -> bytes:
        """The raw bytes of the output tensor of the last inference (ek-out), as many as ek-info announced."""
        for line in self.command("ek-out", max_bytes=self._output_reply_bytes()):
            body = _strip_prefix(line, "m-ek-out-")
            if body is not None:
                try:
                    data = bytes.fromhex(body)
                except ValueError:
                    raise DeviceReplyError(f"{self.transport.description} sent an ek-out line that is not hex") \
                        from None
                expected = self.announced.output_bytes if self.announced else None
                if expected and len(data) != expected:
                    raise DeviceReplyError(f"ek-out has {len(data)} bytes; expected {expected}, the output bytes "
                                           "ek-info announced")
                return data
        raise DeviceError(f"{self.transport.description} did not answer ek-out")

    def layer_output(self, layer: int, nbytes: int, timeout: float | None = None) -> bytes:
        """`ek-layer-out N`: the device runs layers 0..N of one inference on the uploaded input and sends layer N's
        output tensor; exactly `nbytes` (its size in the model) are accepted."""
        if not 0 <= layer < MAX_LAYERS:
            raise DeviceError(f"layer index {layer} is out of range; expected 0 to {MAX_LAYERS - 1}")
        budget = min(MAX_LINE, 2 * nbytes + 64) + REPLY_BYTES
        prefix = f"m-ek-layer-out-{layer}-"
        for line in self.command(f"ek-layer-out {layer}", timeout=timeout, max_bytes=budget):
            body = _strip_prefix(line, prefix)
            if body is not None:
                try:
                    data = bytes.fromhex(body)
                except ValueError:
                    raise DeviceReplyError(f"{self.transport.description} sent an ek-layer-out line that is not "
                                           "hex") from None
                if len(data) != nbytes:
                    raise DeviceReplyError(f"ek-layer-out {layer} has {len(data)} bytes; expected {nbytes}, the size "
                                           "of that layer's output tensor in the model")
                return data
        raise DeviceError(f"{self.transport.description} did not answer ek-layer-out {layer}")

    def _output_elements(self) -> int | None:
        info = self.announced
        if info is None or not info.output_bytes or info.output_type not in TYPE_BYTES:
            return None
        return info.output_bytes // TYPE_BYTES[info.output_type]

    def _output_reply_bytes(self) -> int:
        """Bytes an answer carrying the output may have: ek-out's hex, or m-results' decimals (f32: ~15 a value)."""
        if self.announced is None or not self.announced.output_bytes:
            return MAX_LINE + REPLY_BYTES
        return min(MAX_LINE, 16 * self.announced.output_bytes) + REPLY_BYTES

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


_DECIMAL = re.compile(r"[0-9]{1,20}")  # what out_u64 prints: no sign, no spaces, at most 20 digits


def _number(text: str, name: str, line: str, maximum: int = U64_MAX) -> int:
    """A whole number the device printed with out_u64, in 0..maximum, or one line naming the field."""
    if _DECIMAL.fullmatch(text) and int(text) <= maximum:
        return int(text)
    shown = text if len(text) <= 24 else text[:24] + "..."
    why = ("negative" if text.startswith("-") else "too large" if _DECIMAL.fullmatch(text) or text.isdigit()
           else "not a whole number")
    raise DeviceReplyError(f"{name} is {why}: '{shown}' (line '{line[:60]}'); expected a whole number from 0 to "
                           f"{maximum}")


def _size(count: int) -> str:
    return f"{count:,} bytes"


def _int_list(text: str, line: str) -> list[int]:
    text = text.strip().strip("[]")
    if not text:
        return []
    try:
        values = [int(round(float(v))) if "." in v else int(v) for v in text.split(",")]
    except (ValueError, OverflowError):  # not a number, nan, inf
        raise DeviceReplyError(f"m-results is not a list of numbers (line '{line[:80]}')") from None
    if any(abs(v) > U64_MAX for v in values):
        raise DeviceReplyError(f"m-results has a value out of range (line '{line[:80]}'); expected the output's values")
    return values


def _describe(command: str) -> str:
    return command if len(command) <= 40 else command[:20] + "..."


def _error_text(line: str) -> str:
    return line[2:].strip("[]")[:200] if line.startswith("e-") else line[:200]
