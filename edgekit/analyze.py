"""What a .tflite model costs on a microcontroller: work (MACs), parameters, RAM and flash, and whether it fits.

RAM comes from two places, both reported because they answer different questions:
- the lifetime-based activation plan of edgekit.memory_plan (what the native backend's arena is, and the floor
  for any runtime), and
- the arena TFLite Micro really allocates for the model, measured by running its host interpreter
  (edgekit.reference.tflm_arena_usage), corrected from the 64-bit host to a 32-bit target (see ARENA_32BIT).

MACs count multiply-accumulates of the layers that do them (convolutions, depthwise, fully connected, batch
matmul); everything else (pooling, add, softmax...) is counted separately as "other ops", one per element touched.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from edgekit.errors import EdgekitError
from edgekit.memory_plan import VIEW_OPS, plan_activations
from edgekit.processes import run_tied
from edgekit.tflite_model import Graph

BACKENDS = ("tflm", "native")

# Ops whose cost is multiply-accumulates; their int32 constant inputs are biases, i.e. parameters.
MAC_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D",
                     "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM"})

# Ops that only move or reinterpret bytes: no arithmetic at all.
MOVE_OPS = VIEW_OPS | frozenset({"TRANSPOSE", "CONCATENATION", "PAD", "PADV2", "SLICE", "STRIDED_SLICE", "SPLIT",
                                 "SPLIT_V", "PACK", "UNPACK", "GATHER", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
                                 "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "BROADCAST_TO", "SHAPE"})

# 64-bit host -> 32-bit target: each category of TFLite Micro's persistent ('tail') allocations is multiplied by
# the ratio of its structure's size on a 32-bit target to its size on the 64-bit host. Sizes follow the structs
# TFLite Micro allocates per item (TF_LITE_STATIC_MEMORY layout):
#   TfLiteEvalTensor        data*, dims*, type                         24 -> 12 bytes  (one per tensor)
#   TfLiteTensor            type, data*, dims*, params, alloc, size_t
#                           bytes, quantization {type, params*}        64 -> 36 bytes  (graph inputs/outputs)
#   quantization data       TfLiteAffineQuantization {scale*, zp*,
#                           dim} + a one-entry zero-point array         32 -> 20 bytes
#   NodeAndRegistration     TfLiteNode (6 pointers + int) + registration* 64 -> 32 bytes (one per operator)
# 'Persistent buffer data' (kernels' op data: mostly int32 per-channel multipliers and shifts) and the
# uncategorised rest of the tail are kept as measured, so the estimate errs on the safe (large) side.
# The head (the activation plan) is the same on both: same tensor sizes, same 16-byte alignment.
ARENA_32BIT = {
    "TfLiteEvalTensor data": 12 / 24,
    "Persistent TfLiteTensor data": 36 / 64,
    "Persistent TfLiteTensor quantization data": 20 / 32,
    "NodeAndRegistration struct": 32 / 64,
}


def _size(shape) -> int:
    return int(math.prod(max(int(d), 1) for d in shape)) if shape else 1


def _layer_macs(graph: Graph, op) -> int:
    """Multiply-accumulates of one MAC layer, from its output and weight shapes."""
    t = graph.tensors
    out = _size(t[op.outputs[0]].shape)
    if op.opcode == "CONV_2D":
        _, kh, kw, cin = t[op.inputs[1]].shape  # filter [OC, KH, KW, IC per group]
        return out * kh * kw * cin
    if op.opcode == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = t[op.inputs[1]].shape  # filter [1, KH, KW, OC]
        return out * kh * kw
    if op.opcode == "FULLY_CONNECTED":
        return out * t[op.inputs[1]].shape[-1]  # weights [OUT, IN]: every output sums IN products
    if op.opcode == "TRANSPOSE_CONV":
        oc, kh, kw, _ = t[op.inputs[1]].shape  # inputs: output_shape, filter [OC, KH, KW, IC], input
        return _size(t[op.inputs[2]].shape) * kh * kw * oc
    if op.opcode == "CONV_3D":
        kd, kh, kw, cin, _ = t[op.inputs[1]].shape  # filter [KD, KH, KW, IC, OC]
        return out * kd * kh * kw * cin
    if op.opcode == "BATCH_MATMUL":
        shape = t[op.inputs[0]].shape
        depth = shape[-2] if op.options.get("adj_x") else shape[-1]
        return out * depth
    if op.opcode == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        # inputs 1-8: the gates' input and recurrent weight matrices, each used once per time step
        x = t[op.inputs[0]]
        steps = _size(x.shape) // max(int(x.shape[-1]), 1) if x.shape else 1
        return steps * sum(t[i].size for i in op.inputs[1:9] if i >= 0)
    return 0


def _layer_other_ops(graph: Graph, op) -> int:
    """Work of a layer that is not a MAC: one operation per element read by the window or element-wise op."""
    if op.opcode in MAC_OPS or op.opcode in MOVE_OPS:
        return 0
    out = sum(_size(graph.tensors[o].shape) for o in op.outputs)
    if op.opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        return out * int(op.options.get("filter_height", 1)) * int(op.options.get("filter_width", 1))
    if op.opcode in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"):
        return _size(graph.tensors[op.inputs[0]].shape)
    return out


def _is_parameter(graph: Graph, op, tensor: int) -> bool:
    """Constant inputs are parameters, except int32/int64 shapes and axes given to ops that are not MAC layers."""
    t = graph.tensors[tensor]
    if not t.is_constant:
        return False
    return op.opcode in MAC_OPS or t.dtype not in ("int32", "int64")


def counts(graph: Graph, plan=None, keras_names=None) -> dict:
    """MACs, parameters and activation RAM of a graph: the one count every command reports (analyze, optimize
    before and after each step, profile's MACs per instruction). `native_arena_bytes` is what the native backend
    really reserves (its in-place-aware planner, edgekit.codegen.native_plan), None when it cannot run the graph.
    """
    plan = plan or plan_activations(graph)
    rows = layers(graph, plan, keras_names)
    parameter_tensors = {i for op in graph.operators for i in op.inputs if i >= 0 and _is_parameter(graph, op, i)}
    return {"macs": sum(r["macs"] for r in rows), "other_ops": sum(r["other_ops"] for r in rows),
            "params": sum(graph.tensors[i].size for i in parameter_tensors),
            "peak_activation_bytes": plan.peak_bytes, **native_footprint(graph), "rows": rows}


def native_footprint(graph: Graph) -> dict:
    """The native backend's arena (its own planner) and constant bytes (its own weight layouts) for this graph;
    None for both when it does not run the graph."""
    from edgekit.codegen.native import native_footprint as footprint

    try:
        arena, constants = footprint(graph, preserve_input=True)  # as edgekit build: the input survives inference
    except EdgekitError:
        return {"native_arena_bytes": None, "native_constant_bytes": None}
    return {"native_arena_bytes": arena, "native_constant_bytes": constants}


def layers(graph: Graph, plan=None, keras_names=None) -> list[dict]:
    """One row per operator: op, its Keras layer, output shape, parameters, MACs, other ops, activation bytes."""
    from edgekit.layer_names import operator_layers

    plan = plan or plan_activations(graph)
    live = plan.live_bytes_per_operator()
    names = operator_layers(graph, keras_names)
    rows = []
    for op in graph.operators:
        constant_inputs = [i for i in op.inputs if i >= 0 and _is_parameter(graph, op, i)]
        outputs = [graph.tensors[o] for o in op.outputs]
        rows.append({
            "index": op.index,
            "op": op.display_name,
            "layer": names[op.index],
            "output_shape": list(outputs[0].shape) if outputs else [],
            "params": sum(graph.tensors[i].size for i in constant_inputs),
            "weights_bytes": sum(graph.tensors[i].nbytes for i in constant_inputs),
            "macs": _layer_macs(graph, op) if op.opcode in MAC_OPS else 0,
            "other_ops": _layer_other_ops(graph, op),
            "activation_bytes": 0 if op.opcode in VIEW_OPS else sum(t.nbytes for t in outputs),
            "live_bytes": live[op.index],
        })
    return rows


class TflmCrash(EdgekitError):
    """TFLite Micro died on the model: unlike an op it does not support, this means the file is broken."""


ARENA_TIMEOUT_S = 300
_ARENA_CHILD = "from edgekit.analyze import _arena_child; _arena_child()"


def _arena_child() -> None:
    """Child process: model bytes on stdin, ArenaUsage as JSON on stdout, an EdgekitError's line on stderr."""
    from edgekit.reference import tflm_arena_usage

    try:
        usage = tflm_arena_usage(sys.stdin.buffer.read())
    except EdgekitError as error:
        sys.stderr.write(f"{error}\n")
        sys.exit(1)
    except Exception as error:  # tflite-micro's Python wrapper reading a file it cannot make sense of
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
        sys.stderr.write(f"TFLite Micro cannot load this model: {detail}\n")
        sys.exit(1)
    sys.stdout.write(json.dumps(vars(usage)))


_ARENAS: dict[str, dict] = {}  # sha256 of the model -> tflm_arena(), so build's stages measure once


def tflm_arena(graph: Graph) -> dict:
    """The arena TFLite Micro allocates for this model on the host, and the estimate for a 32-bit target.

    TFLite Micro runs in a child process: on a corrupted model its C++ code can crash (SIGSEGV), and that must
    become a one-line error, not the death of edgekit (the child costs about 0.3 s).
    """
    if graph.sha256 not in _ARENAS:
        _ARENAS[graph.sha256] = _measure_tflm_arena(graph)
    return dict(_ARENAS[graph.sha256])


def _measure_tflm_arena(graph: Graph) -> dict:
    try:
        child = run_tied([sys.executable, "-c", _ARENA_CHILD], input=graph.model_bytes, capture_output=True,
                         timeout=ARENA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TflmCrash(f"TFLite Micro did not finish loading {graph.name} in {ARENA_TIMEOUT_S} s; the model is "
                        f"probably corrupted") from None
    if child.returncode < 0:
        raise TflmCrash(f"TFLite Micro crashed (signal {-child.returncode}) while loading {graph.name}; "
                        f"the model is probably corrupted")
    if child.returncode != 0:
        lines = child.stderr.decode("utf-8", "replace").strip().splitlines()
        raise EdgekitError(lines[-1] if lines else f"TFLite Micro failed on {graph.name} (exit {child.returncode})")
    usage = json.loads(child.stdout)
    categories = usage["categories"]
    saved = sum(round(categories.get(name, 0) * (1 - ratio)) for name, ratio in ARENA_32BIT.items())
    return {
        "total_bytes": usage["total_bytes"],
        "head_bytes": usage["head_bytes"],
        "tail_bytes": usage["tail_bytes"],
        "categories": categories,
        "total_bytes_32bit": usage["total_bytes"] - saved,
        "tail_bytes_32bit": usage["tail_bytes"] - saved,
    }


_LITERT_CHILD = "from edgekit.analyze import _litert_child; _litert_child()"


def _litert_child() -> None:
    """Child process: model bytes on stdin; exit 1 with LiteRT's line on stderr when it cannot run the model."""
    import numpy as np

    from edgekit.quantize import _interpreter

    try:
        interpreter = _interpreter(sys.stdin.buffer.read())
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
    except EdgekitError as error:
        sys.stderr.write(f"{error}\n")
        sys.exit(1)
    except Exception as error:  # the wrapper's own exceptions on a file it cannot make sense of
        sys.stderr.write(" ".join(f"the LiteRT interpreter cannot run this model: {type(error).__name__}: "
                                  f"{error}".split())[:300] + "\n")
        sys.exit(1)


def litert_refusal(graph: Graph) -> str | None:
    """Why LiteRT (the other reference) cannot run the model, or None when it can. Asked only when TFLite Micro
    refused: a model both refuse is broken, not merely beyond TFLite Micro's operators. In a child, as
    TFLite Micro is, so that a crash is a line, not edgekit's death."""
    try:
        child = run_tied([sys.executable, "-c", _LITERT_CHILD], input=graph.model_bytes, capture_output=True,
                         timeout=ARENA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"the LiteRT interpreter did not finish loading it in {ARENA_TIMEOUT_S} s"
    if child.returncode < 0:
        return f"the LiteRT interpreter crashed (signal {-child.returncode}) on it"
    if child.returncode != 0:
        lines = child.stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"the LiteRT interpreter failed on it (exit {child.returncode})"
    return None


# Expected rank of the weight input of each MAC op (input index, rank): a corrupted file can break them.
_WEIGHT_RANKS = {"CONV_2D": (1, 4), "DEPTHWISE_CONV_2D": (1, 4), "FULLY_CONNECTED": (1, 2),
                 "TRANSPOSE_CONV": (1, 4), "CONV_3D": (1, 5), "BATCH_MATMUL": (1, None),
                 "UNIDIRECTIONAL_SEQUENCE_LSTM": (2, 2)}  # input 2: input-to-forget weights (1 is optional)


def check_structure(graph: Graph) -> None:
    """One-line error for a graph whose operators cannot be what they claim (a corrupted but parsable file)."""
    for op in graph.operators:
        where = f"{graph.name} looks corrupted: operator {op.index} ({op.display_name})"
        if not op.outputs or any(o < 0 for o in op.outputs):
            raise EdgekitError(f"{where} has no valid output tensor; expected a complete .tflite file")
        if op.opcode in _WEIGHT_RANKS:
            slot, rank = _WEIGHT_RANKS[op.opcode]
            if len(op.inputs) <= max(slot, 2 if op.opcode == "TRANSPOSE_CONV" else 0) or op.inputs[slot] < 0:
                raise EdgekitError(f"{where} lacks its weights input; expected a complete .tflite file")
            shape = graph.tensors[op.inputs[slot]].shape
            if rank is not None and len(shape) != rank:
                raise EdgekitError(f"{where} has weights of shape {list(shape)}; expected {rank} dimensions")
            needs_2d_input = op.opcode in ("BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM")
            if needs_2d_input and (op.inputs[0] < 0 or len(graph.tensors[op.inputs[0]].shape) < 2):
                raise EdgekitError(f"{where} has an input of fewer than 2 dimensions")


def _board_limits(board) -> tuple[int, int]:
    """RAM and flash the application may use: the app partition when the board has one (ESP-IDF), not the chip."""
    flash = int(board.flash.get("app_partition_bytes", board.flash_bytes))
    return int(board.ram_bytes), flash


def _budget(needed: int | None, available: int) -> dict:
    if needed is None:
        return {"needed_bytes": None, "available_bytes": available, "margin_bytes": None, "margin_percent": None,
                "fits": None}
    margin = available - needed
    return {"needed_bytes": needed, "available_bytes": available, "margin_bytes": margin,
            "margin_percent": round(100.0 * margin / available, 1) if available else None, "fits": margin >= 0}


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _suggestions(graph: Graph, report: dict, board, ram: dict, flash: dict) -> list[str]:
    """What would make a model that does not fit fit, most effective first."""
    tips = []
    if not report["int8"] and (ram["fits"] is False or flash["fits"] is False):
        tips.append("quantize it to int8 first (`edgekit quantize`): weights and activations shrink about 4x")
    backend = report["backend"]
    other = "native" if backend == "tflm" else "tflm"
    other_ram = report["ram_needed_bytes_by_backend"][other]
    other_flash = report["flash_bytes_by_backend"][other]
    ram_avail, flash_avail = ram["available_bytes"], flash["available_bytes"]
    if ram["fits"] is False:
        short = -ram["margin_bytes"]
        arena = report["ram_breakdown"]["arena_bytes"] + report["ram_breakdown"]["kernel_scratch_bytes"]
        if board.psram_bytes and arena <= board.psram_bytes:
            tips.append(f"RAM is {_kib(short)} short: put the arena ({_kib(arena)}) in the board's PSRAM "
                        f"({_kib(board.psram_bytes)}), slower but large enough")
        if other_ram is not None and other_ram <= ram_avail and (other_flash or 0) <= flash_avail:
            tips.append(f"the {other} backend needs {_kib(other_ram)} of RAM, which fits (--backend {other})")
        # The part of the RAM that scales with the activations: TFLite Micro's head (its activation plan), or ours.
        arena = report["tflm_arena"]
        peak = arena["head_bytes"] if backend == "tflm" else report["peak_activation_bytes"]
        fixed = ram["needed_bytes"] - peak
        allowed = ram_avail - fixed
        inputs = graph.input_tensors()
        if allowed > 0 and peak and inputs and len(inputs[0].shape) == 4:
            ratio = allowed / peak  # activations of a convolutional net scale with the input's area
            _, h, w, c = inputs[0].shape
            side = math.sqrt(ratio)
            if int(h * side) >= 1 and int(w * side) >= 1:
                tips.append(f"activations are {_kib(peak)}; a smaller input of about {int(h * side)}x{int(w * side)}"
                            f"x{c} instead of {h}x{w}x{c} would bring them under {_kib(allowed)}")
        if allowed > 0 and peak:
            tips.append(f"or make the widest layers about {100 * (1 - allowed / peak):.0f}% narrower "
                        f"(structured pruning of channels, `edgekit optimize`)")
        elif allowed <= 0:
            tips.append(f"even without activations the runtime needs {_kib(fixed)}, more than the board's RAM")
    if flash["fits"] is False:
        short = -flash["margin_bytes"]
        weights = report["weights_bytes"]
        if other_flash is not None and other_flash <= flash_avail and (other_ram or 0) <= ram_avail:
            tips.append(f"the {other} backend needs {_kib(other_flash)} of flash, which fits (--backend {other})")
        if weights and short < weights:
            tips.append(f"flash is {_kib(short)} short: prune at least {math.ceil(100 * short / weights)}% of the "
                        f"{_kib(weights)} of weights (structured pruning, `edgekit optimize`)")
        elif weights:
            tips.append(f"flash is {_kib(short)} short, more than all the weights ({_kib(weights)}): "
                        f"the runtime alone is too large for this board")
    return tips


def analyze(graph: Graph, board=None, backend: str = "tflm", keras_names=None) -> dict:
    """The full report (the same dict `edgekit analyze --json` prints). `board` is a Board or None; `keras_names`
    the layer names of the Keras model the graph came from, when known (edgekit.layer_names)."""
    if backend not in BACKENDS:
        raise EdgekitError(f"unknown backend '{backend}'; expected one of: {', '.join(BACKENDS)}")
    notes = []
    int8 = graph.is_fully_int8
    if not int8:
        dtypes = sorted({t.dtype for t in graph.input_tensors()})
        notes.append(f"not a fully int8 model ({'/'.join(dtypes)} input): the TFLite Micro arena is the one of "
                     f"this {'float' if any(d.startswith('float') for d in dtypes) else 'mixed'} model; "
                     f"quantize it (`edgekit quantize`) for the int8 figures")

    check_structure(graph)
    if backend == "native":  # what the native backend folds before codegen (edgekit.codegen.canonical)
        from edgekit.codegen.canonical import canonicalize

        folded = canonicalize(graph).notes
        if folded:
            notes.append(f"before native codegen: {'; '.join(folded)}")
    plan = plan_activations(graph)
    counted = counts(graph, plan, keras_names)
    rows = counted["rows"]
    constants = [t for t in graph.tensors if t.is_constant]
    weights_bytes = sum(t.nbytes for t in constants)
    params = counted["params"]

    tflm_error = None
    try:
        arena = tflm_arena(graph)
    except TflmCrash:
        raise
    except EdgekitError as error:  # a model TFLite Micro cannot run (an op it lacks): the rest still stands
        arena = None
        tflm_error = str(error)
        litert_error = litert_refusal(graph)
        if litert_error is not None:  # no reference runs it: a report of its figures would be a wrong success
            raise EdgekitError(f"{graph.name} cannot be run by any reference interpreter: {tflm_error}; "
                               f"{litert_error}") from None
        notes.append(tflm_error)

    target_64bit = board is not None and board.is_64bit
    tflm_arena_target = None
    scratch = 0
    if arena is not None:
        tflm_arena_target = arena["total_bytes"] if target_64bit else arena["total_bytes_32bit"]
        scratch = _kernel_scratch(graph, board)
    ram_runtime = {b: board.runtime_ram_estimate(b) if board is not None else 0 for b in BACKENDS}
    flash_runtime = {b: board.runtime_flash_estimate(b) if board is not None else 0 for b in BACKENDS}
    native_arena_bytes = counted["native_arena_bytes"]
    arena_by_backend = {"tflm": tflm_arena_target,
                        "native": plan.peak_bytes if native_arena_bytes is None else native_arena_bytes}
    scratch_by_backend = {"tflm": scratch, "native": 0}
    ram_by_backend = {b: None if arena_by_backend[b] is None else
                      arena_by_backend[b] + scratch_by_backend[b] + ram_runtime[b] for b in BACKENDS}
    # TFLite Micro reads the flatbuffer itself; the native backend compiles the constants into C, in its kernels'
    # layouts (int16 where its SIMD loops read them so: up to twice the .tflite's weight bytes).
    native_constants = counted.get("native_constant_bytes")
    native_constants = weights_bytes if native_constants is None else native_constants
    flash_by_backend = {"tflm": len(graph.model_bytes) + flash_runtime["tflm"],
                        "native": native_constants + flash_runtime["native"]}

    report = {
        "model": graph.name,
        "sha256": graph.sha256,
        "int8": int8,
        "backend": backend,
        "inputs": [_tensor_info(t) for t in graph.input_tensors()],
        "outputs": [_tensor_info(t) for t in graph.output_tensors()],
        "ops": graph.opcodes,
        "num_layers": len(graph.operators),
        "macs": sum(r["macs"] for r in rows),
        "other_ops": sum(r["other_ops"] for r in rows),
        "params": params,
        "weights_bytes": weights_bytes,
        "model_bytes": len(graph.model_bytes),
        "peak_activation_bytes": plan.peak_bytes,
        "native_arena_bytes": native_arena_bytes,
        "native_constant_bytes": counted.get("native_constant_bytes"),
        "tflm_arena_bytes": arena["total_bytes"] if arena else None,
        "tflm_arena_bytes_32bit": arena["total_bytes_32bit"] if arena else None,
        "tflm_arena": arena,
        "tflm_error": tflm_error,
        "ram_bytes": ram_by_backend[backend],
        "ram_breakdown": {"arena_bytes": arena_by_backend[backend],
                          "kernel_scratch_bytes": scratch_by_backend[backend],
                          "runtime_bytes": ram_runtime[backend]},
        "ram_needed_bytes_by_backend": ram_by_backend,
        "flash_bytes": flash_by_backend[backend],
        "flash_breakdown": {"model_bytes": len(graph.model_bytes) if backend == "tflm" else native_constants,
                            "runtime_bytes": flash_runtime[backend]},
        "flash_bytes_by_backend": flash_by_backend,
        "board": None,
        "fits": None,
        "ram": None,
        "flash": None,
        "suggestions": [],
        "notes": notes,
        "layers": rows,
        "memory_plan": plan.to_dict(),
    }
    if board is not None:
        ram_avail, flash_avail = _board_limits(board)
        ram = _budget(ram_by_backend[backend], ram_avail)
        flash = _budget(flash_by_backend[backend], flash_avail)
        report["board"] = {"name": board.name, "description": board.description, "core": board.core,
                           "ram_bytes": ram_avail, "flash_bytes": flash_avail, "psram_bytes": board.psram_bytes}
        report["ram"], report["flash"] = ram, flash
        if ram["fits"] is None:  # TFLite Micro could not load the model
            report["fits"] = False
            report["suggestions"] = ["TFLite Micro cannot load this model (see the note), so edgekit builds it "
                                     "for no backend: convert it with operators TFLite Micro supports"]
        else:
            report["fits"] = bool(ram["fits"] and flash["fits"])
            report["suggestions"] = _suggestions(graph, report, board, ram, flash)
    return report


def require_tflm_loads(report: dict) -> None:
    """Refuse, for every backend, a model the reference interpreter cannot load: what TFLite Micro refuses is
    broken or beyond what edgekit can check bit-exactness against, and must not become firmware."""
    if report.get("tflm_error"):
        raise EdgekitError(f"{report['model']} cannot be built for any backend: {report['tflm_error']}")


def _kernel_scratch(graph: Graph, board) -> int:
    """Scratch of the board's optimized TFLite Micro kernels (CMSIS-NN, ESP-NN), which the host's reference
    kernels do not ask for; the same estimate the generated project sizes its arena with."""
    if board is None or board.arch == "host":
        return 0
    from edgekit.platforms import platform_for
    from edgekit.tflm_kernels import kernel_scratch_bytes

    return int(kernel_scratch_bytes(graph, platform_for(board).target(board).kernels))


def _tensor_info(t) -> dict:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
            "scale": float(t.scale[0]) if t.scale.size == 1 else None,
            "zero_point": int(t.zero_point[0]) if t.zero_point.size == 1 else None}
