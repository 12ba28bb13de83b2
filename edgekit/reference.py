"""TFLite Micro's own interpreter, built for the host (the `tflite-micro` package): the reference.

It defines what a device running TFLite Micro computes (its kernels can differ from LiteRT's by one LSB) and how
much arena it really allocates. Its recording allocator prints the arena use from C++ to stderr; we capture that
at the file-descriptor level and parse it.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edgekit.errors import EdgekitError

_GENEROUS_ARENA = 64 * 1024 * 1024


@dataclass
class ArenaUsage:
    """What TFLite Micro's RecordingMicroAllocator reported on this (64-bit) host."""

    total_bytes: int
    head_bytes: int  # non-persistent: the activation tensors' plan
    tail_bytes: int  # persistent: interpreter structures, per-op data (grows with pointer size)
    categories: dict[str, int]  # e.g. 'Persistent buffer data' -> bytes


@contextmanager
def _captured_stderr():
    """Capture what C/C++ code writes to file descriptor 2."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        text = {"value": ""}
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text["value"] = sink.read().decode("utf-8", "replace")


def _interpreter(model_bytes: bytes, arena_size: int = _GENEROUS_ARENA):
    from tflite_micro.python.tflite_micro import runtime

    try:
        with _captured_stderr() as log:
            interpreter = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
    except (RuntimeError, ValueError) as error:
        detail = " ".join(log["value"].split())[-300:] or str(error)
        raise EdgekitError(f"TFLite Micro cannot load this model: {detail}") from None
    return interpreter


def tflm_arena_usage(model_bytes: bytes) -> ArenaUsage:
    """Run one inference on zeros and read what the recording allocator allocated."""
    interpreter = _interpreter(model_bytes)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    with _captured_stderr() as log:
        interpreter.invoke()
        interpreter.print_allocations()
    text = log["value"]

    def number(label: str) -> int:
        match = re.search(rf"Arena allocation {label} (\d+) bytes", text)
        if not match:
            raise EdgekitError(f"could not read TFLite Micro's arena report (no '{label}' line in its output)")
        return int(match.group(1))

    categories = {m.group(1): int(m.group(2)) for m in re.finditer(r"'([^']+)' used (\d+) bytes", text)}
    return ArenaUsage(number("total"), number("head"), number("tail"), categories)


def run_reference(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Outputs of TFLite Micro for a batch of inputs (first axis = samples), one inference per sample.

    Inputs must already have the model's input dtype (int8 for a fully int8 model); output 0 is returned.
    """
    interpreter = _interpreter(model_bytes)
    details = interpreter.get_input_details(0)
    shape = tuple(int(d) for d in details["shape"])
    dtype = np.dtype(details["dtype"])
    inputs = np.asarray(inputs)
    if inputs.dtype != dtype:
        raise EdgekitError(f"reference inputs are {inputs.dtype}; the model expects {dtype.name}")
    outputs = []
    for sample in inputs:
        if sample.size != int(np.prod(shape)):
            raise EdgekitError(f"an input has {sample.size} values; the model expects shape {list(shape)}")
        interpreter.set_input(sample.reshape(shape), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs)
