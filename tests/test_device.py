"""The device protocol client against a protocol simulator that can misbehave.

`Simulator` speaks docs/protocol.md like an edgekit application (outputs computed by TFLite Micro's host
interpreter when given a model, else a fixed function of the input) and can inject faults: garbage bytes, lines
split into tiny writes, silence, a reset mid-run, a dead connection, a wrong output, an input lost after the
first inference of `infer N W` (clobber). It runs in a thread behind a loopback socket (what QEMU offers) or as a
subprocess on pipes (what the host board offers): `python tests/test_device.py --serve [--model M] [--fault F]`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

TPS = 1_000_000


class Simulator:
    """The device side of the protocol. `feed(bytes)` consumes input and returns the bytes to send back."""

    def __init__(self, model_bytes: bytes | None = None, faults=(), input_bytes: int = 40, output_bytes: int = 4):
        self.faults = set(faults)
        self.model_bytes = model_bytes
        self.layers = [("FULLY_CONNECTED", 600), ("SOFTMAX", 300)]  # ticks inside an inference's 1000+
        if model_bytes is not None:
            from edgekit.tflite_model import parse_tflite

            graph = parse_tflite(model_bytes)
            self.input_tensor, self.output_tensor = graph.input_tensors()[0], graph.output_tensors()[0]
            input_bytes, output_bytes = self.input_tensor.nbytes, self.output_tensor.nbytes
            self.layers = [(op.opcode, 20 + i) for i, op in enumerate(graph.operators)]
        self.input_bytes, self.output_bytes = input_bytes, output_bytes
        self.input = bytearray(input_bytes)
        self.expected = 0
        self.output = bytes(output_bytes)
        self.ticks, self.runs = 0, 0
        self.commands = 0
        self.pending = bytearray()
        self.silent = False
        self.overrun = False

    def banner(self) -> bytes:
        if "initfail" in self.faults:
            return b"e-[init failed: arena too small]\r\nm-ready\r\n"
        return b"m-init-done\r\nm-ready\r\n"

    def compute(self, data: bytes) -> bytes:
        if self.model_bytes is None:  # a fixed, checkable function of the input
            total = sum(data)
            return bytes([(total + i) % 256 for i in range(self.output_bytes)])
        from edgekit.reference import run_reference

        x = np.frombuffer(bytes(data), dtype=self.input_tensor.dtype)[None]
        return run_reference(self.model_bytes, x)[0].astype(self.output_tensor.dtype).tobytes()

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        self.pending += data
        while b"%" in self.pending:
            cut = self.pending.index(b"%")
            command = bytes(self.pending[:cut]).replace(b"\r", b"").replace(b"\n", b"").decode("ascii", "replace")
            del self.pending[:cut + 1]
            if self.pending.strip(b"\r\n") and "strict" in self.faults:
                self.overrun = True  # the host sent more before m-ready: no flow control
            if self.silent:
                continue
            if "deaf" in self.faults and not self.commands:  # still booting: the first command is lost
                self.commands = -1
                continue
            out += self.answer(command)
        return bytes(out)

    def answer(self, command: str) -> bytes:
        self.commands = max(self.commands, 0) + 1
        words = command.split()
        lines = []
        if command == "name":
            lines = ["m-name-dut-[edgekit]"]
        elif command == "profile":
            lines = ["m-profile-[edgekit simulator]", "m-model-[simulated]"]
        elif command == "ek-info":
            lines = ["m-ek-info-backend-native", f"m-ek-info-input-{self.input_bytes}-i8",
                     f"m-ek-info-output-{self.output_bytes}-i8", f"m-ek-info-layers-{len(self.layers)}",
                     f"m-ek-info-tps-{TPS}"]
        elif command == "ek-mem":
            lines = ["m-ek-mem-arena-4096", "m-ek-mem-arena-used-3000", "m-ek-mem-stack-512"]
        elif words[:2] == ["db", "load"]:
            n = int(words[2])
            if n != self.input_bytes:
                lines = [f"e-[expected {self.input_bytes} bytes, got {n}]"]
            else:
                self.expected, self.input = n, bytearray()
                lines = [f"m-[Expecting {n} bytes]"]
        elif words[:1] == ["db"]:
            self.input += bytes.fromhex(words[1])
            if len(self.input) >= self.expected:
                lines = ["m-load-done"]
        elif words[:1] == ["infer"]:
            if "silence" in self.faults:
                self.silent = True
                return b""
            if "reset" in self.faults:
                return self.banner()
            if "die" in self.faults:
                raise ConnectionAbortedError("simulated power loss")
            n, w = int(words[1]), int(words[2])
            self.ticks, self.runs = (1000 + sum(self.input) % 97) * n, n
            self.output = self.compute(self.input)
            if "clobber" in self.faults:
                # an application that lets the backend reuse the input's memory and never restores it: every
                # inference after the first runs on what the previous one left there (zeros, here)
                self.input = bytearray(len(self.input))
                if n + w > 1:
                    self.output = self.compute(self.input)
            if "wrong" in self.faults:
                self.output = bytes([(self.output[0] + 1) % 256]) + self.output[1:]
            lines = [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}", "m-lap-us-100",
                     f"m-lap-us-{100 + self.ticks}", "m-infer-done",
                     "m-results-[" + ",".join(str(v) for v in np.frombuffer(self.output, np.int8)) + "]"]
        elif command == "ek-ticks":
            lines = [f"m-ek-ticks-{self.ticks}-{self.runs}"]
        elif command == "ek-layers":
            lines = [f"m-ek-layer-{i}-{name}-{t + self.ticks % 7}" for i, (name, t) in enumerate(self.layers)]
        elif command == "ek-out":
            lines = ["m-ek-out-" + self.output.hex()]
        else:
            lines = [f"e-[unknown command: {command[:32]}]"]
        text = "".join(line + "\r\n" for line in lines + ["m-ready"])
        if "garbage" in self.faults:
            text = "\x00\xffnoise without prefix\r\n\xfe" + text.replace("m-ready", "\x01\x02m-ready")
        return text.encode("latin-1")


def _send(write, data: bytes, faults) -> None:
    if "split" in faults:
        for i in range(0, len(data), 3):
            write(data[i:i + 3])
            time.sleep(0.0005)
    else:
        write(data)


def serve_socket(sim: Simulator, listener: socket.socket) -> None:
    """Accept one connection and serve it until the host closes it (or a fault ends it)."""
    conn, _ = listener.accept()
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _send(conn.sendall, sim.banner(), sim.faults)
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                reply = sim.feed(data)
            except ConnectionAbortedError:
                conn.shutdown(socket.SHUT_RDWR)
                return
            try:
                _send(conn.sendall, reply, sim.faults)
            except OSError:
                return


class SocketDevice:
    """A simulator behind 127.0.0.1:PORT in a thread, like QEMU's UART socket."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=serve_socket, args=(sim, self.listener), daemon=True)
        self.thread.start()

    def close(self):
        self.listener.close()
        self.thread.join(timeout=2)


def serve_pipes(sim: Simulator) -> None:
    """Serve on stdin/stdout (the host board's way)."""
    out = sys.stdout.buffer

    def write(data):
        out.write(data)
        out.flush()

    _send(write, sim.banner(), sim.faults)
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        try:
            reply = sim.feed(data)
        except ConnectionAbortedError:
            os._exit(3)
        _send(write, reply, sim.faults)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args()
    model = Path(args.model).read_bytes() if args.model else None
    serve_pipes(Simulator(model, args.fault))


if __name__ == "__main__":
    main()


# -- tests ---------------------------------------------------------------------------------------------------

import subprocess  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402

from edgekit.device import Device, DeviceError, PipeTransport, SerialTransport  # noqa: E402


@contextmanager
def connected(*faults, timeout=2.0, **kw):
    """(simulator behind a socket, Device connected to it), both closed afterwards."""
    fake = SocketDevice(Simulator(faults=faults, **kw))
    device = Device(SerialTransport(fake.url), timeout=timeout)
    try:
        yield fake, device
    finally:
        device.close()
        fake.close()


def _round_trip(device: Device, sim: Simulator):
    boot = device.sync(3.0)
    assert boot == []
    info = device.info()
    assert (info.backend, info.input_bytes, info.output_bytes, info.ticks_per_second) == ("native", 40, 4, TPS)
    assert device.memory() == {"arena": 4096, "arena_used": 3000, "stack": 512}
    assert device.identity() == {"firmware": "edgekit simulator", "model": "simulated"}
    data = bytes(range(100, 140))
    device.load_input(data, chunk=7)
    result = device.infer(1, 1)
    assert bytes(sim.input) == data
    expected = sim.compute(data)
    assert result.results == list(np.frombuffer(expected, np.int8))
    assert result.lap_us == 1000 + sum(data) % 97
    assert device.ticks() == (1000 + sum(data) % 97, 1)
    assert [name for _, name, _ in device.layers()] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert device.output() == expected
    device.infer(3, 2)  # MLPerf's way: one upload, warm-ups, N timed runs; ek-ticks covers the N
    assert device.ticks() == (3 * (1000 + sum(data) % 97), 3) and device.output() == expected


def test_round_trip_over_socket():
    with connected() as (fake, device):
        _round_trip(device, fake.sim)
        assert device.skipped_lines == 0


def test_garbage_and_split_lines_are_survived():
    with connected("garbage", "split", timeout=5.0) as (fake, device):
        _round_trip(device, fake.sim)
        assert device.skipped_lines > 0


def test_uploads_wait_for_each_chunk():
    """A device that cannot buffer two commands: the client must wait for m-ready after every db chunk."""
    with connected("strict") as (fake, device):
        device.sync()
        device.load_input(bytes(40), chunk=4)
        assert fake.sim.commands >= 11 and not fake.sim.overrun


def test_silent_device_times_out():
    with connected("silence", timeout=1.0) as (fake, device):
        device.sync()
        device.load_input(bytes(40))
        started = time.monotonic()
        with pytest.raises(DeviceError, match="no answer .* 'infer 1 0' within 1 s"):
            device.infer(1, 0)
        assert time.monotonic() - started < 2.0


def test_reset_mid_run_is_reported():
    with connected("reset") as (fake, device):
        device.sync()
        device.load_input(bytes(40))
        with pytest.raises(DeviceError, match="reset during 'infer 1 0'"):
            device.infer(1, 0)


def test_connection_lost_mid_run():
    with connected("die", timeout=10.0) as (fake, device):
        device.sync()
        device.load_input(bytes(40))
        started = time.monotonic()
        with pytest.raises(DeviceError, match="lost the connection"):
            device.infer(1, 0)
        assert time.monotonic() - started < 2.0


def test_device_errors_become_one_line():
    with connected() as (fake, device):
        device.sync()
        with pytest.raises(DeviceError, match="expected 40 bytes, got 12"):
            device.load_input(bytes(12))
        lines = device.command("bogus", check=False)
        assert lines == ["e-[unknown command: bogus]"]
        with pytest.raises(DeviceError, match="not a valid device command"):
            device.command("db " + "00" * 2000)


def test_wrong_port_fails_fast():
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    started = time.monotonic()
    with pytest.raises(DeviceError, match=f"cannot open serial port socket://127.0.0.1:{port}"):
        SerialTransport(f"socket://127.0.0.1:{port}")
    with pytest.raises(DeviceError, match="cannot open serial port /dev/ttyEDGEKIT0"):
        SerialTransport("/dev/ttyEDGEKIT0")
    assert time.monotonic() - started < 3.0


def test_socket_close_is_instant():
    with connected() as (fake, device):
        device.sync()
        started = time.monotonic()
        device.close()
        assert time.monotonic() - started < 0.1  # pyserial's own close sleeps 0.3 s


def _spawn(*faults):
    command = [sys.executable, __file__, "--serve"] + [f"--fault={f}" for f in faults]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return process, Device(PipeTransport(process, "fake host program"), timeout=3.0)


def test_pipe_transport_round_trip():
    process, device = _spawn("garbage")
    try:
        sim = Simulator()
        device.sync()
        data = bytes(range(40))
        device.load_input(data)
        device.infer(1, 0)
        assert device.output() == sim.compute(data)
    finally:
        device.close()
        process.wait(timeout=5)


def test_pipe_program_dying_is_reported():
    process, device = _spawn("die")
    try:
        device.sync()
        device.load_input(bytes(40))
        started = time.monotonic()
        with pytest.raises(DeviceError, match="exited with status 3"):
            device.infer(1, 0)
        assert time.monotonic() - started < 2.0
    finally:
        device.close()
        process.wait(timeout=5)


def _pty_device(*faults):
    """The simulator behind a pseudo-terminal: the same termios code path as a USB serial port."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    sim = Simulator(faults=faults)

    def serve():
        while True:
            try:
                data = os.read(master, 4096)
                reply = sim.feed(data) if data else b""
            except (OSError, ConnectionAbortedError):
                os.close(master)  # the "cable" is pulled
                return
            if not data:
                return
            os.write(master, reply)

    threading.Thread(target=serve, daemon=True).start()
    return os.ttyname(slave), slave


def test_round_trip_over_a_tty():
    name, slave = _pty_device()
    device = Device(SerialTransport(name), timeout=2.0)
    try:
        device.sync()
        device.load_input(bytes(range(40)))
        device.infer(1, 0)
        assert device.output() == Simulator().compute(bytes(range(40)))
    finally:
        device.close()
        os.close(slave)


def test_unplugged_serial_device():
    name, slave = _pty_device("die")
    device = Device(SerialTransport(name), timeout=5.0)
    os.close(slave)  # only the client's own descriptor keeps the tty open now
    try:
        device.sync()
        device.load_input(bytes(40))
        started = time.monotonic()
        with pytest.raises(DeviceError, match=f"lost the connection to {name}"):
            device.infer(1, 0)
        assert time.monotonic() - started < 2.0
    finally:
        device.close()


def test_a_device_that_only_babbles_times_out():
    """Noise and no m-ready, ever (wrong baud rate looks like this): a clear error at the deadline, no hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def babble():
        conn, _ = listener.accept()
        rng = np.random.default_rng(1)
        with conn:
            while not stop.is_set():
                try:
                    conn.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes().replace(b"\n", b"m"))
                except OSError:
                    return
                time.sleep(0.001)

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    device = Device(SerialTransport(f"socket://127.0.0.1:{listener.getsockname()[1]}"))
    try:
        started = time.monotonic()
        with pytest.raises(DeviceError, match="no answer .* within 1 s"):
            device.sync(1.0)
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        device.close()
        listener.close()
        thread.join(timeout=2)


def test_sync_asks_again_when_the_first_command_is_lost():
    """A board reset by its flash tool may still be booting when `name` arrives: sync resends it."""
    with connected("deaf", "strict") as (fake, device):
        started = time.monotonic()
        device.sync(6.0)
        assert 1.5 < time.monotonic() - started < 4
        assert device.info().input_bytes == 40 and not fake.sim.overrun
