"""Seeded fuzzing of the model reader and the commands with mutated MLPerf Tiny int8 models.

Mutations: truncations, byte flips, random semantic edits of the flatbuffer (tensor shapes, types, buffers,
quantization, operator indices, opcodes and options, graph ends, operator order) and the per-rule edits of
tests/graph_edits.py. Asserted on every case: parse_tflite raises nothing but EdgekitError; `analyze`, `build
--board host --no-compile` (native codegen) and `quantize` exit 0, 1 or 2 without a traceback (nor the CLI's
"internal error" line, which stands for one) and within a timeout;
and no build succeeds for a model that TFLite Micro, run in a child process, refuses to load.
"""

from __future__ import annotations

import copy
import json
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.errors import EdgekitError
from edgekit.tflite_model import parse_tflite
from tests.graph_edits import RULE_EDITS, edited, model_object, pack

SEED = 20240609
MODELS = ("ad", "kws", "sww", "vww", "ic")


def _truncations(data: bytes, rng) -> list[bytes]:
    cuts = {9, 200, len(data) // 3, len(data) - 1, int(rng.integers(10, len(data)))}
    return [data[:cut] for cut in sorted(cuts)]


def _flips(data: bytes, rng) -> list[bytes]:
    """Byte flips anywhere, and in the first 2 KiB, where the flatbuffer's root tables and vtables usually are."""
    cases = []
    for count, window in ((1, len(data)), (4, 2048), (16, 2048), (64, len(data)), (3, 512)):
        flipped = bytearray(data)
        for position in rng.integers(0, min(window, len(data)), count):
            flipped[int(position)] ^= int(rng.integers(1, 256))
        cases.append(bytes(flipped))
    return cases


def _semantic(data: bytes, rng, count: int) -> list[bytes]:
    """Random edits of one field each, through the schema's object API."""
    cases = []
    template = model_object(data)
    for _ in range(count):
        model = copy.deepcopy(template)
        subgraph = model.subgraphs[0]
        tensors, ops = subgraph.tensors, subgraph.operators
        t = tensors[int(rng.integers(len(tensors)))]
        op = ops[int(rng.integers(len(ops)))]
        pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
        kind = int(rng.integers(14))
        if kind == 0 and t.shape is not None and len(t.shape):
            shape = np.array(t.shape, dtype=np.int32)
            shape[int(rng.integers(len(shape)))] = pick([0, -1, 1, 2, 7, 1 << 16, 1 << 30])
            t.shape = shape
        elif kind == 1:
            t.type = int(pick([0, 2, 3, 7, 9, 10, 17, 18, 99]))
        elif kind == 2:
            t.buffer = int(pick([0, 1, len(model.buffers) - 1, len(model.buffers), 1 << 20]))
        elif kind == 3 and t.quantization is not None and t.quantization.scale is not None:
            scale = np.array(t.quantization.scale, dtype=np.float32)
            scale[int(rng.integers(len(scale)))] = pick([0.0, np.nan, np.inf, -1.0, 1e30, 1e-30])
            t.quantization.scale = scale
        elif kind == 4 and t.quantization is not None:
            t.quantization.zeroPoint = np.zeros(int(rng.integers(0, 4)), dtype=np.int64)
            t.quantization.quantizedDimension = int(rng.integers(0, 6))
        elif kind == 5 and op.inputs is not None and len(op.inputs):
            inputs = np.array(op.inputs, dtype=np.int32)
            inputs[int(rng.integers(len(inputs)))] = int(rng.integers(-2, len(tensors) + 2))
            op.inputs = inputs
        elif kind == 6:
            op.outputs = np.array([int(rng.integers(-1, len(tensors) + 1))], dtype=np.int32)
        elif kind == 7:
            op.opcodeIndex = int(rng.integers(0, len(model.operatorCodes) + 2))
        elif kind == 8 and op.builtinOptions is not None:
            fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, bool))]
            if fields:
                setattr(op.builtinOptions, pick(fields), int(pick([0, -1, 2, 7, 99, 1 << 20])))
        elif kind == 9:
            op.builtinOptionsType, op.builtinOptions = int(rng.integers(0, 130)), None
        elif kind == 10:
            which = pick(["inputs", "outputs"])
            setattr(subgraph, which, np.array([int(rng.integers(-1, len(tensors) + 1))], dtype=np.int32))
        elif kind == 11 and len(ops) > 2:
            i, j = (int(x) for x in rng.choice(len(ops), 2, replace=False))
            ops[i], ops[j] = ops[j], ops[i]
        elif kind == 12 and len(ops) > 2:
            del ops[int(rng.integers(len(ops)))]
        else:
            model.version = int(pick([0, 2, 4, 99]))
        try:
            cases.append(pack(model))
        except (TypeError, struct.error):  # a value the field's type cannot hold: no file to test
            continue
    return cases


@pytest.fixture(scope="module")
def cases(int8_model_path):
    """(label, bytes) of every mutated model: a few hundred, the same on every run."""
    rng = np.random.default_rng(SEED)
    result = []
    for name in MODELS:
        data = int8_model_path(name).read_bytes()
        result.append((f"{name}-repacked", pack(model_object(data))))
        result += [(f"{name}-truncated-{i}", b) for i, b in enumerate(_truncations(data, rng))]
        result += [(f"{name}-flipped-{i}", b) for i, b in enumerate(_flips(data, rng))]
        result += [(f"{name}-edit-{i}", b) for i, b in enumerate(_semantic(data, rng, 24 if name in ("kws", "ad")
                                                                            else 8))]
    kws = int8_model_path("kws").read_bytes()
    result += [(f"kws-rule-{rule}-{i}", edited(kws, edit)) for i, (rule, _, edit) in enumerate(RULE_EDITS)]
    return result


def test_parse_raises_only_edgekit_errors(cases):
    refused = 0
    for label, data in cases:
        try:
            parse_tflite(data, name=label)
        except EdgekitError as error:
            refused += 1
            assert "\n" not in str(error)
        # anything else propagates: the test fails with the traceback and the label in it
    assert refused >= len(cases) // 2  # most mutations break the model; the rest must stay usable


CASE_TIMEOUT_S = 120  # one command on one case; a hang fails the test instead of stalling the suite


def _hang(signum, frame):
    raise TimeoutError(f"a command ran for more than {CASE_TIMEOUT_S} s")


def _run(argv, capsys) -> tuple[int, str]:
    """The CLI in this process (a subprocess per case would take minutes): exit code and stderr."""
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in argv])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return done.value.code, capsys.readouterr().err


def _tflm_refuses(paths) -> set:
    """The models TFLite Micro cannot load (or dies on), each tried in a child process as edgekit.reference does."""
    refused = set()
    for path in paths:
        child = subprocess.run([sys.executable, "-c", "import sys; from edgekit.reference import tflm_arena_usage; "
                                "tflm_arena_usage(open(sys.argv[1], 'rb').read())", str(path)],
                               capture_output=True, timeout=CASE_TIMEOUT_S)
        if child.returncode != 0:
            refused.add(path)
    return refused


@pytest.mark.slow
def test_commands_on_mutated_models(cases, tmp_path, capsys):
    """analyze, quantize (which refuses an int8 model after reading it) and build (host, native, no compile) on
    each case: one line or success, never a traceback; a model that TFLite Micro refuses is never built."""
    rng = np.random.default_rng(SEED + 1)
    chosen = [case for case in cases if case[0].endswith("-repacked")]
    chosen += [cases[i] for i in sorted(rng.choice(len(cases), min(len(cases), 90), replace=False))
               if not cases[i][0].endswith("-repacked")]
    built = []
    for label, data in chosen:
        model = tmp_path / f"{label}.tflite"
        model.write_bytes(data)
        for argv in (["analyze", model, "--json"], ["quantize", model, "-o", tmp_path / f"q-{label}.tflite"],
                     ["build", model, "--board", "host", "--no-compile", "-o", tmp_path / f"build-{label}"]):
            code, err = _run(argv, capsys)
            assert code in (0, 1, 2) and "Traceback" not in err and "internal error" not in err, (label, argv, err)
            if code != 0:
                assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (label, err)
            if code == 0 and argv[0] == "build":
                built.append(model)
    assert not _tflm_refuses(built), "built a model TFLite Micro cannot load"
    # the unmutated repack of each model builds: the fuzz does not pass by refusing everything
    assert {f"{name}-repacked" for name in MODELS} <= {path.stem for path in built}


@pytest.mark.slow
def test_cli_subprocess_on_mutated_models(cases, tmp_path):
    """A few cases through `python -m edgekit` itself, with a timeout: nothing differs out of process."""
    rng = np.random.default_rng(SEED + 2)
    picks = [cases[i] for i in sorted(rng.choice(len(cases), 6, replace=False))]
    picks.append(next(c for c in cases if c[0].startswith("kws-rule-cycle")))
    for label, data in picks:
        model = tmp_path / f"{label}.tflite"
        model.write_bytes(data)
        for argv in (["analyze", model, "--json"], ["quantize", model, "-o", tmp_path / f"q-{label}.tflite"]):
            child = subprocess.run([sys.executable, "-m", "edgekit", *map(str, argv)], capture_output=True,
                                   text=True, timeout=CASE_TIMEOUT_S)
            assert child.returncode in (0, 1, 2), (label, argv[0], child.stderr)
            assert "Traceback" not in child.stderr and "internal error" not in child.stderr, (label, child.stderr)
            if child.returncode == 0:
                assert argv[0] == "analyze" and json.loads(child.stdout)["model"] == label
            else:
                assert len(child.stderr.strip().splitlines()) == 1, child.stderr
        if label.startswith("kws-rule-cycle"):
            assert "(cycle)" in child.stderr
