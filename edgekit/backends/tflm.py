"""The TFLite Micro backend: the model array, the exact op resolver, the sized arena, the interpreter wrapper.

It writes the model side (templates/tflm/common/) behind edgekit_backend.h and declares what a build needs:
its C++ sources and the TFLite Micro library, built from a tree the user provides (TFLM_DIR), with the
platform's optimized kernels. Platforms that can build that library (cmake-arm; host and qemu, in
edgekit.platforms.make_tflm) or that get it from their SDK's package manager (esp-idf, arduino, pico-sdk)
consume it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgekit import __version__
from edgekit.backends.base import YES, Backend, BackendOutput, BuildNeeds, Library, Target, Verdict, no
from edgekit.codegen.common import c_comment, c_string, device_model_name, project_name, render, tensor_context
from edgekit.errors import EdgekitError
from edgekit.tflm_kernels import TFLM_GIT_TAG, kernel_scratch_bytes, tflm_target_arch  # noqa: F401

# BuiltinOperator name -> tflite::MicroMutableOpResolver method (TFLite Micro's micro_mutable_op_resolver.h).
OP_RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin",
    "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh",
    "TILE": "AddTile", "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

# Custom operators TFLite Micro ships a kernel for: custom code -> resolver method.
CUSTOM_RESOLVER_METHODS = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
}

# Arena margin on top of the estimate: kernels' allocations we cannot measure on the host vary with the TFLite
# Micro version and its optimized kernels, so leave room rather than fail at ek_model_init() on the board.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_BYTES = 1024


@dataclass
class ArenaSize:
    """How the arena constant of a project was arrived at (all in bytes)."""

    host_bytes: int  # measured by TFLite Micro's recording allocator on this 64-bit host
    target_bytes: int  # the same, corrected for a 32-bit target (edgekit.analyze.tflm_arena)
    scratch_bytes: int  # optimized kernels' scratch buffers (CMSIS-NN / ESP-NN), estimated from the layers
    margin_bytes: int
    bytes: int  # the constant in the generated code
    overridden: bool = False
    margin_fraction: float = ARENA_MARGIN_FRACTION  # of measured + scratch, before the fixed ARENA_MARGIN_BYTES

    def to_dict(self) -> dict:
        return dict(vars(self))


def resolver_ops(graph) -> list[dict]:
    """The resolver's registrations: one per distinct operator, sorted; unknown or custom ops stop the build."""
    entries = []
    for name in sorted({op.opcode if op.opcode != "CUSTOM" else f"CUSTOM:{op.custom_code}" for op in graph.operators}):
        if name.startswith("CUSTOM:"):
            code = name[len("CUSTOM:"):]
            method = CUSTOM_RESOLVER_METHODS.get(code)
            if method is None:
                raise EdgekitError(
                    f"{graph.name} uses the custom operator '{c_comment(code)}', which TFLite Micro has no kernel "
                    f"for; expected builtin operators only (re-export the model without it)")
        else:
            method = OP_RESOLVER_METHODS.get(name)
            if method is None:
                raise EdgekitError(
                    f"{graph.name} uses the operator {c_comment(name)}, which TFLite Micro's "
                    f"MicroMutableOpResolver cannot register; expected one of its builtin operators")
        entries.append({"op": name, "method": method})
    return entries


def arena_size(graph, kernels: str, arena_bytes: int | None = None, margin_fraction: float | None = None,
               word_bytes: int = 4) -> ArenaSize:
    """The arena constant: the measured arena (its 32-bit estimate; on a 64-bit target, such as the host, the
    host's own measurement) + kernel scratch + margin, rounded to 16 bytes.

    `margin_fraction` (a recipe's [build] arena_margin) replaces the default 10 % margin."""
    fraction = ARENA_MARGIN_FRACTION if margin_fraction is None else float(margin_fraction)
    measured = _measured_arena(graph)
    host, target = int(measured["total_bytes"]), int(measured["total_bytes_32bit"])
    base = host if word_bytes == 8 else target
    scratch = kernel_scratch_bytes(graph, kernels)
    margin = int(math.ceil((base + scratch) * fraction)) + ARENA_MARGIN_BYTES
    total = _align16(base + scratch + margin)
    if arena_bytes is not None:
        if arena_bytes < target:
            raise EdgekitError(
                f"--arena-bytes {arena_bytes:,} is below the {target:,} bytes TFLite Micro needs for {graph.name} "
                f"on a 32-bit target; expected at least that")
        return ArenaSize(host, target, scratch, 0, _align16(arena_bytes), overridden=True)
    return ArenaSize(host, target, scratch, margin, total, margin_fraction=fraction)


_ARENA_CACHE: dict[str, dict] = {}


def _measured_arena(graph) -> dict:
    """edgekit.analyze.tflm_arena, once per model (the same model is often rendered for several boards)."""
    from edgekit.analyze import tflm_arena

    if graph.sha256 not in _ARENA_CACHE:
        _ARENA_CACHE[graph.sha256] = tflm_arena(graph)
    return _ARENA_CACHE[graph.sha256]


def _align16(n: int) -> int:
    return (int(n) + 15) // 16 * 16


def _psram_placement(target: Target, arena: ArenaSize) -> bool:
    """Put the arena in external RAM when the board has some and internal RAM cannot hold it."""
    if not target.psram_bytes or target.ram_budget is None:
        return False
    return arena.bytes > target.ram_budget


def _version_text() -> str:
    """edgekit's version as it goes into a C string literal (EK_VERSION): no quotes, no backslashes."""
    return re.sub(r"[^0-9A-Za-z.+\-]", "_", __version__)


_HEX = [f"0x{b:02x}" for b in range(256)]


def _hex_rows(data: bytes, per_line: int = 12) -> str:
    """The array body, 12 bytes a line (a table lookup: models are hundreds of kilobytes)."""
    hexed = [_HEX[b] for b in data]
    return "\n".join("  " + ", ".join(hexed[i:i + per_line]) + "," for i in range(0, len(hexed), per_line))


def _write(root: Path, relative: str, text: str, written: list[str]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    written.append(relative)


TFLM_LIBRARY_NAME = "tflite-micro"


def tflm_library(kernels: str) -> Library:
    return Library(TFLM_LIBRARY_NAME, "TFLM_DIR", "tensorflow/lite/micro/micro_interpreter.h",
                   "set TFLM_DIR to one made by create_tflm_tree.py (see the project's README)",
                   {"kernels": kernels, "defines": ["TF_LITE_STATIC_MEMORY", "NDEBUG"]})


@dataclass
class TflmModel:
    """What the backend wrote: the resolver's registrations and the arena."""

    ops: list[dict]
    arena: ArenaSize
    arena_in_psram: bool
    context: dict = field(default_factory=dict, repr=False)  # the model-side template context (for the README)


def model_context(graph, arena: ArenaSize, in_psram: bool, target: Target) -> dict:
    """The model-side template context (also the base of the platforms' TFLite Micro scaffolds)."""
    inputs, outputs = graph.input_tensors(), graph.output_tensors()
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgekitError(f"{graph.name} has {len(inputs)} inputs and {len(outputs)} outputs; the device "
                           f"application serves models with exactly one of each")
    ops = resolver_ops(graph)
    name = device_model_name(graph.name)
    return {
        "model_name": name,  # printable ASCII, no quotes: what ek_model_info() reports
        "model_name_c": c_string(name),
        "model_comment": c_comment(graph.name),
        "model_sha256": graph.sha256,
        "model_len": len(graph.model_bytes),
        "ops": ops,
        "num_ops": len(ops),
        "num_layers": len(graph.operators),
        "input": tensor_context(inputs[0]),
        "output": tensor_context(outputs[0]),
        "arena": arena,
        "arena_in_psram": in_psram,
        "board_comment": c_comment(target.description),
        "project_name": project_name(graph),
        "family": target.platform,
        "margin_percent": f"{arena.margin_fraction * 100:g}",
        "margin_fixed": ARENA_MARGIN_BYTES,
        "version": _version_text(),
    }


class TflmBackend(Backend):
    name = "tflm"

    def libraries(self, target: Target) -> list[Library]:
        return [tflm_library(target.kernels)]

    def supports(self, graph) -> Verdict:
        try:
            resolver_ops(graph)
        except EdgekitError as error:
            return no(str(error))
        return YES

    def write(self, graph, model_dir: Path, target: Target, *, arena_bytes: int | None = None,
              arena_margin: float | None = None, **options) -> BackendOutput:
        arena = arena_size(graph, target.kernels, arena_bytes, arena_margin, target.word_bytes)
        in_psram = _psram_placement(target, arena)
        ctx = model_context(graph, arena, in_psram, target)
        ext = target.cxx_ext
        root = Path(model_dir)
        written: list[str] = []
        _write(root, "model_data.h", render("tflm/common/model_data.h.j2", **ctx), written)
        _write(root, f"model_data.{ext}",
               render("tflm/common/model_data.cc.j2", model_bytes=_hex_rows(graph.model_bytes), **ctx), written)
        _write(root, "model_settings.h", render("tflm/common/model_settings.h.j2", **ctx), written)
        _write(root, "op_resolver.h", render("tflm/common/op_resolver.h.j2", **ctx), written)
        _write(root, f"edgekit_backend_tflm.{ext}", render("tflm/common/edgekit_backend_tflm.cc.j2", **ctx),
               written)
        needs = BuildNeeds(sources=[f"edgekit_backend_tflm.{ext}", f"model_data.{ext}"],
                           headers=["model_data.h", "model_settings.h", "op_resolver.h"],
                           libraries=self.libraries(target), cxx=True)
        manifest = {"arena": arena.to_dict(), "arena_in_psram": in_psram, "tflm_kernels": target.kernels}
        return BackendOutput(self.name, written, needs, arena.bytes, manifest,
                             TflmModel(ctx["ops"], arena, in_psram, ctx))
