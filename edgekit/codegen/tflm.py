"""The TFLite Micro project for a real board: model array, exact op resolver, sized arena, app, platform, scaffold.

One entry point, `generate_tflm_project(graph, board, out_dir)`, renders the templates of templates/tflm/ for the
board's project family (esp-idf, cmake-arm, arduino, pico-sdk) and copies the shared protocol server from
templates/app/. Everything that comes from the model or the user goes through codegen.common's escaping helpers,
and the output is stable: the same model and board give byte-identical files.
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgekit import __version__
from edgekit.codegen.common import (atomic_output_dir, c_comment, c_float, c_identifier, c_string, device_model_name,
                                    render, safe_file_stem)
from edgekit.errors import EdgekitError
from edgekit.resources import templates_dir

FAMILIES = ("esp-idf", "cmake-arm", "arduino", "pico-sdk")

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

_EK_TYPES = {"int8": "EK_TYPE_INT8", "uint8": "EK_TYPE_UINT8", "int16": "EK_TYPE_INT16", "int32": "EK_TYPE_INT32",
             "float32": "EK_TYPE_FLOAT32"}

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


@dataclass
class TflmProject:
    family: str
    files: list[str]  # relative paths, sorted
    ops: list[dict]  # [{"op": "CONV_2D", "method": "AddConv2D"}], in resolver order
    arena: ArenaSize
    arena_in_psram: bool
    project_name: str
    build_hint: str  # one line: how to build by hand
    expected_firmware: str = ""  # where that hand build puts the image, relative to the project folder
    extra: dict = field(default_factory=dict)  # e.g. {"flasher_args": "build/flasher_args.json"} for ESP-IDF


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


def kernel_scratch_bytes(graph, family: str) -> int:
    """Largest scratch buffer an optimized kernel asks for, an upper bound from the layer shapes.

    The host interpreter runs TFLite Micro's reference kernels, which request none. CMSIS-NN's s8 convolutions
    and depthwise convolutions need an int16 im2col buffer of at most 2 x kernel_h x kernel_w x in_channels
    elements, its average pool in_channels int32 sums; ESP-NN (ESP32 family) additionally copies a padded input
    for convolutions with SAME padding. Scratch buffers live only during their layer, so the largest one counts.
    """
    largest = 0
    for op in graph.operators:
        if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
            continue
        x = graph.tensors[op.inputs[0]]
        if len(x.shape) != 4:
            continue
        _, h, w, c = x.shape
        if op.opcode == "AVERAGE_POOL_2D":
            need = 4 * c
        else:
            weights = graph.tensors[op.inputs[1]]
            kh, kw = weights.shape[1], weights.shape[2]
            need = 2 * 2 * kh * kw * c
            if family == "esp-idf" and op.options.get("padding") == "SAME":
                need += (h + kh - 1) * (w + kw - 1) * c
        largest = max(largest, need)
    return largest


def arena_size(graph, family: str, arena_bytes: int | None = None, margin_fraction: float | None = None) -> ArenaSize:
    """The arena constant: 32-bit estimate of the measured arena + kernel scratch + margin, rounded to 16 bytes.

    `margin_fraction` (a recipe's [build] arena_margin) replaces the default 10 % margin."""
    fraction = ARENA_MARGIN_FRACTION if margin_fraction is None else float(margin_fraction)
    measured = _measured_arena(graph)
    host, target = int(measured["total_bytes"]), int(measured["total_bytes_32bit"])
    scratch = kernel_scratch_bytes(graph, family)
    margin = int(math.ceil((target + scratch) * fraction)) + ARENA_MARGIN_BYTES
    total = _align16(target + scratch + margin)
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


def _tensor_ctx(t) -> dict:
    if t.dtype not in _EK_TYPES:
        raise EdgekitError(f"tensor '{c_comment(t.name)}' is {t.dtype}; expected int8, uint8, int16, int32 or float32")
    scale = float(t.scale[0]) if t.scale.size else 0.0
    zero_point = int(t.zero_point[0]) if t.zero_point.size else 0
    return {"name_comment": c_comment(t.name), "shape": list(t.shape), "dtype": t.dtype, "ek_type": _EK_TYPES[t.dtype],
            "bytes": t.nbytes, "elements": t.size, "scale": c_float(scale), "zero_point": zero_point,
            "shape_text": "x".join(str(d) for d in t.shape) or "scalar"}


def _psram_placement(board, arena: ArenaSize, internal_budget: int | None) -> bool:
    """Put the arena in external RAM when the board has some and internal RAM cannot hold it."""
    if not board.psram_bytes:
        return False
    budget = internal_budget if internal_budget is not None else board.ram_bytes
    return arena.bytes > budget


def _version_text() -> str:
    """edgekit's version as it goes into a C string literal (EK_VERSION): no quotes, no backslashes."""
    return re.sub(r"[^0-9A-Za-z.+\-]", "_", __version__)


def _project_name(graph) -> str:
    return "edgekit_" + safe_file_stem(graph.name)[:40]


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


def _copy_app(root: Path, dest_dir: str, written: list[str], rename_c_to: str | None = None) -> None:
    """The shared protocol server and the two contract headers, copied verbatim from templates/app/."""
    app = templates_dir() / "app"
    needed = ["edgekit_app.c", "edgekit_app.h", "edgekit_backend.h", "edgekit_platform.h"]
    missing = [name for name in needed if not (app / name).is_file()]
    if missing:
        raise EdgekitError(f"stage app not available: templates/app lacks {', '.join(missing)}")
    for name in needed:
        target = name
        if rename_c_to and name.endswith(".c"):
            target = name[:-2] + rename_c_to
        relative = f"{dest_dir}/{target}" if dest_dir else target
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app / name, root / relative)
        written.append(relative)


def _context(graph, board, arena: ArenaSize, in_psram: bool, family: str) -> dict:
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
        "input": _tensor_ctx(inputs[0]),
        "output": _tensor_ctx(outputs[0]),
        "arena": arena,
        "arena_in_psram": in_psram,
        "board": board,
        "board_comment": c_comment(board.description),
        "project_name": _project_name(graph),
        "family": family,
        "margin_percent": f"{arena.margin_fraction * 100:g}",
        "margin_fixed": ARENA_MARGIN_BYTES,
        "version": _version_text(),
    }


def _render_common(root: Path, ctx: dict, graph, dest: str, ext: str, written: list[str]) -> None:
    prefix = f"{dest}/" if dest else ""
    _write(root, f"{prefix}model_data.h", render("tflm/common/model_data.h.j2", **ctx), written)
    _write(root, f"{prefix}model_data.{ext}",
           render("tflm/common/model_data.cc.j2", model_bytes=_hex_rows(graph.model_bytes), **ctx), written)
    _write(root, f"{prefix}model_settings.h", render("tflm/common/model_settings.h.j2", **ctx), written)
    _write(root, f"{prefix}op_resolver.h", render("tflm/common/op_resolver.h.j2", **ctx), written)
    _write(root, f"{prefix}edgekit_backend_tflm.{ext}", render("tflm/common/edgekit_backend_tflm.cc.j2", **ctx),
           written)


def _render_esp_idf(root: Path, ctx: dict, graph, written: list[str]) -> str:
    _render_common(root, ctx, graph, "main", "cc", written)
    _copy_app(root, "main", written)
    for template, target in [("CMakeLists.txt.j2", "CMakeLists.txt"), ("main_CMakeLists.txt.j2", "main/CMakeLists.txt"),
                             ("idf_component.yml.j2", "main/idf_component.yml"),
                             ("sdkconfig.defaults.j2", "sdkconfig.defaults"), ("partitions.csv.j2", "partitions.csv"),
                             ("edgekit_platform_esp.c.j2", "main/edgekit_platform_esp.c"),
                             ("main.c.j2", "main/main.c")]:
        _write(root, target, render(f"tflm/esp-idf/{template}", **ctx), written)
    target = ctx["board"].data.get("idf", {}).get("target", "esp32")
    # idf.py writes the app image, the bootloader, the partition table and the offsets of each
    # (flasher_args.json, which the esptool runner reads) into build/.
    name = ctx["project_name"]
    return (f"idf.py set-target {target} && idf.py build", f"build/{name}.bin",
            {"flasher_args": "build/flasher_args.json"})


# A TFLite Micro commit fetched by -DEDGEKIT_FETCH_TFLM=ON (overridable with -DTFLM_GIT_TAG).
TFLM_GIT_TAG = "90b983c2b3f1480642e040bbd2ddb37b998f3424"  # upstream main, 2026-08-20

# edgekit core name -> TFLite Micro's TARGET_ARCH for cortex_m_generic
_TFLM_TARGET_ARCH = {"cortex-m0plus": "cortex-m0plus", "cortex-m3": "cortex-m3", "cortex-m4": "cortex-m4",
                     "cortex-m4f": "cortex-m4+fp", "cortex-m7": "cortex-m7+fp", "cortex-m33": "cortex-m33",
                     "cortex-m55": "cortex-m55"}

# External RAM of cmake-arm boards: where it is mapped (the platform must initialise its controller).
_EXT_RAM_BASE = {"STM32F746NG": 0xC0000000}

CMAKE_ARM_STACK_BYTES = 8192


def tflm_target_arch(board) -> str:
    """TFLite Micro's TARGET_ARCH (its Makefile's spelling, e.g. cortex-m4+fp) for the board's core."""
    return _TFLM_TARGET_ARCH.get(board.core, board.core)


def _cmake_arm_context(ctx: dict) -> dict:
    board = ctx["board"]
    flags = [f for f in board.toolchain.get("cflags", []) if f.startswith("-m")]
    ext_ram = None
    if ctx["arena_in_psram"]:
        base = _EXT_RAM_BASE.get(board.mcu)
        if base is None:
            raise EdgekitError(f"the arena does not fit {board.name}'s internal RAM and edgekit does not know where "
                               f"its external RAM is mapped; expected a smaller model or --arena-bytes")
        ext_ram = {"base": base, "bytes": board.psram_bytes}
    return dict(ctx, cpu_flags=" ".join(flags), mcu_macro=c_identifier(board.mcu, prefix="mcu"),
                tflm_git_tag=TFLM_GIT_TAG, tflm_target_arch=tflm_target_arch(board),
                stack_bytes=CMAKE_ARM_STACK_BYTES, flash_base=int(board.flash.get("flash_base", 0x08000000)),
                ram_base=int(board.flash.get("ram_base", 0x20000000)), ext_ram=ext_ram)


def _render_cmake_arm(root: Path, ctx: dict, graph, written: list[str]) -> str:
    ctx = _cmake_arm_context(ctx)
    _render_common(root, ctx, graph, "src", "cc", written)
    _copy_app(root, "src", written)
    for template, target in [("CMakeLists.txt.j2", "CMakeLists.txt"), ("link.ld.j2", "link.ld"),
                             ("startup.c.j2", "src/startup.c"), ("edgekit_platform_cortexm.c.j2",
                                                                   "src/edgekit_platform_cortexm.c"),
                             ("debug_log.cc.j2", "src/debug_log.cc"), ("main.c.j2", "src/main.c")]:
        _write(root, target, render(f"tflm/cmake-arm/{template}", **ctx), written)
    # The ELF; the post-build step writes the .bin and .hex beside it.
    return ("cmake -B build -DTFLM_DIR=<tflm tree> && cmake --build build", f"build/{ctx['project_name']}.elf",
            {})


def _render_arduino(root: Path, ctx: dict, graph, written: list[str]) -> str:
    sketch = ctx["project_name"]
    ctx = dict(ctx, sketch=sketch)
    # arduino-cli compiles .c and .cpp files of the sketch folder (not .cc); the sketch file names the folder.
    _render_common(root, ctx, graph, sketch, "cpp", written)
    _copy_app(root, sketch, written)
    _write(root, f"{sketch}/{sketch}.ino", render("tflm/arduino/sketch.ino.j2", **ctx), written)
    _write(root, f"{sketch}/edgekit_platform_arduino.cpp",
           render("tflm/arduino/edgekit_platform_arduino.cpp.j2", **ctx), written)
    return (shlex.join(arduino_compile_command(ctx["board"], sketch)), f"build/{sketch}.ino.elf", {})


def arduino_compile_command(board, sketch: str, cli: str = "arduino-cli", output_dir: str = "build") -> list[str]:
    """The compile command of an Arduino project: edgekit's version as EK_VERSION (a sketch has no build file
    to carry it), the images in `output_dir` (build/<sketch>.ino.elf, .bin, .hex) where `edgekit flash` finds
    them."""
    fqbn = str(board.flash.get("fqbn", "<fqbn>"))
    return [cli, "compile", "--fqbn", fqbn, "--build-property",
            f'compiler.c.extra_flags=-DEK_VERSION="{_version_text()}"', "--output-dir", output_dir, sketch]


def _render_pico(root: Path, ctx: dict, graph, written: list[str]) -> str:
    _render_common(root, ctx, graph, "src", "cc", written)
    _copy_app(root, "src", written)
    for template, target in [("CMakeLists.txt.j2", "CMakeLists.txt"),
                             ("edgekit_platform_pico.c.j2", "src/edgekit_platform_pico.c"),
                             ("main.c.j2", "src/main.c")]:
        _write(root, target, render(f"tflm/pico-sdk/{template}", **ctx), written)
    # pico_add_extra_outputs() writes the .uf2 (and .elf, .bin, .hex) into build/.
    return ("cmake -B build -DPICO_SDK_PATH=<sdk> -DPICO_TFLMICRO_PATH=<pico-tflmicro> && cmake --build build",
            f"build/{ctx['project_name']}.uf2", {})


_RENDERERS = {"esp-idf": _render_esp_idf, "cmake-arm": _render_cmake_arm, "arduino": _render_arduino,
              "pico-sdk": _render_pico}


def write_tflm_project(graph, board, root, arena_bytes: int | None = None,
                       internal_ram_budget: int | None = None, arena_margin: float | None = None) -> TflmProject:
    """Render the project into an existing folder `root` (the caller makes it atomic); `arena_margin`: the
    arena's margin fraction instead of the default."""
    family = board.project
    if family not in _RENDERERS:
        raise EdgekitError(f"board {board.name} builds '{family}' projects; the TFLite Micro backend generates "
                           f"{', '.join(FAMILIES)} projects (use --backend native for emulated and host boards)")
    root = Path(root)
    arena = arena_size(graph, family, arena_bytes, arena_margin)
    in_psram = _psram_placement(board, arena, internal_ram_budget)
    ctx = _context(graph, board, arena, in_psram, family)
    written: list[str] = []
    hint, image, extra = _RENDERERS[family](root, ctx, graph, written)
    _write(root, "README.md", render("tflm/README.md.j2", build_hint=hint, expected_firmware=image,
                                     tflm_target_arch=tflm_target_arch(board), **ctx), written)
    return TflmProject(family=family, files=sorted(written), ops=ctx["ops"], arena=arena, arena_in_psram=in_psram,
                       project_name=ctx["project_name"], build_hint=hint, expected_firmware=image, extra=extra)


def generate_tflm_project(graph, board, out_dir, arena_bytes: int | None = None) -> TflmProject:
    """Generate the TFLite Micro project for `board` in `out_dir`, atomically (all or nothing)."""
    with atomic_output_dir(out_dir) as staging:
        project = write_tflm_project(graph, board, staging, arena_bytes)
    return project
