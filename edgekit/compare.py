"""`edgekit compare`: the backends built and profiled on the same board, side by side.

Each backend is an `edgekit build` into DIR/<backend> and an `edgekit profile` of it (the same code, not a copy):
on emulated boards the figure is QEMU's instruction count (-icount shift=0), on the host board the host's time,
on a real board the latency when a device is attached (--port), else only the sizes, and the report says what is
missing. Every backend runs the same inputs (seeded random int8, or --data), so their outputs are compared with
each other as well as with TFLite Micro's host interpreter (edgekit.reference).

A backend that cannot run here (no TFLite Micro tree with its kernels, or a pair the board's platform refuses)
is `skipped` with the exact reason; one that fails to build or run is `failed` with its one-line error. The
document (docs/compare.md lists its keys) is written to DIR/compare.json as well.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, UsageError

# name -> (edgekit backend, TFLite Micro kernels)
BACKENDS = {"native": ("native", None), "tflm-reference": ("tflm", "reference"), "tflm-cmsis-nn": ("tflm", "cmsis-nn")}
DEFAULT_RUNS = 3  # instruction counts under -icount are exact: a few runs check they repeat
COMPARE_JSON = "compare.json"
FORMAT = 1
# where a tree with these kernels is looked for when no --tflm-dir has them
TREE_VARIABLES = {"reference": "TFLM_DIR", "cmsis-nn": "TFLM_DIR_CMSIS_NN"}


def parse_backends(text) -> list[str]:
    """'native,tflm-reference' (or a list) -> the names, checked, in order, without repeats."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise UsageError(f"unknown backend '{unknown[0] if unknown else text}' for compare; expected a comma-separated "
                         f"list of: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def find_trees(tflm_dirs=(), env=None) -> dict:
    """kernels -> TflmTree: the given --tflm-dir trees first (each carries one set of kernels), then $TFLM_DIR and
    $TFLM_DIR_CMSIS_NN. A given path that is not a tree is a usage error; a kernel set nobody gave is absent."""
    from edgekit.tflm_library import find_tree, is_tree

    env = os.environ if env is None else env
    trees = {}
    for path in tflm_dirs or ():
        tree = find_tree(path, env={})
        trees.setdefault(tree.kernels, tree)
    for kernels, variable in TREE_VARIABLES.items():
        if env.get(variable):
            if not is_tree(env[variable]):
                raise UsageError(f"{variable} {env[variable]} is not a TFLite Micro tree (no tensorflow/lite/micro/"
                                 f"micro_interpreter.h); expected the output of create_tflm_tree.py")
            tree = find_tree(env[variable], env={})
            trees.setdefault(tree.kernels, tree)
    return trees


def _no_tree_reason(kernels: str) -> str:
    how = " with OPTIMIZED_KERNEL_DIR=cmsis_nn" if kernels == "cmsis-nn" else " without OPTIMIZED_KERNEL_DIR"
    return (f"no TFLite Micro tree with {kernels} kernels: pass --tflm-dir (or set {TREE_VARIABLES[kernels]}) to "
            f"one made by create_tflm_tree.py{how}")


def compare(model, board, backends=None, *, data=None, out_dir=None, runs: int | None = None,
            port: str | None = None, tflm_dirs=(), env=None, progress=None, quiet: bool = True) -> dict:
    """Build and profile each of `backends` (default: all of BACKENDS) for `board`; returns the document that is
    also written to `out_dir`/compare.json (default folder: compare-<model>-<board>).

    `tflm_dirs`: TFLite Micro trees (any kernels); `port`: a real board's serial port; `runs`: timed inferences
    per backend (default 3); `quiet` False: one line on stderr as each backend is done. Raises EdgekitError after
    writing compare.json when a backend failed."""
    from edgekit.boards import load_board
    from edgekit.codegen.common import safe_file_stem

    names = parse_backends(backends or list(BACKENDS))
    board = board if hasattr(board, "project") else load_board(str(board))
    if runs is not None and runs < 1:
        raise UsageError(f"--runs must be at least 1, got {runs}")
    trees = find_trees(tflm_dirs, env)
    model_path = Path(model)
    out = Path(out_dir) if out_dir else Path(f"compare-{safe_file_stem(model_path.stem)}-{board.name}")
    _check_output(out)
    graph = _int8_graph(model_path, data)  # a bad model fails here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    tflite = _int8_file(graph, model_path, out)
    runs = runs or DEFAULT_RUNS
    measured = board.emulated or board.arch == "host" or port is not None
    task = progress.add_task("compare", total=len(names)) if progress else None

    entries = []
    for name in names:
        if progress:
            progress.update(task, description=f"{name}: build and profile" if measured else f"{name}: build")
        entries.append(_one(name, graph, tflite, board, out, trees, data, runs, port, measured))
        _say_done(entries[-1], quiet)
        if progress:
            progress.advance(task)
    document = _document(graph, board, entries, runs, data, out, measured, port)
    from edgekit.fileio import atomic_write_bytes

    atomic_write_bytes(out / COMPARE_JSON, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    failed = [e for e in entries if e["status"] == "failed"]
    if failed:
        raise EdgekitError(f"{failed[0]['backend']} failed: {failed[0]['reason']}"
                           + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
                           + f"; every backend's result is in {out / COMPARE_JSON}")
    return document


def _say_done(entry: dict, quiet: bool) -> None:
    from edgekit.console import info

    if entry["status"] == "ok":
        figure = (f"{entry['instructions']:,} instructions" if entry["instructions"] is not None
                  else f"{entry['latency_us']:,.1f} us")
        info(f"compare: {entry['backend']}: {figure}, max_abs_diff {entry['max_abs_diff_reference']} against the "
             f"reference ({entry['seconds']} s)", quiet)
    else:
        info(f"compare: {entry['backend']} {entry['status']}: {entry['reason']}", quiet)


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out} is a file; expected a folder (it gets one build folder per backend and "
                         f"{COMPARE_JSON})")


def _int8_graph(model_path: Path, data):
    """The int8 graph, as `edgekit build` gets it (a Keras model or a float .tflite is quantized, once)."""
    from edgekit.build import _int8_model as build_int8_model

    graph, _ = build_int8_model(model_path, data, None, True, [], lambda stage: None, {})
    if data is not None:  # refused here in one line, not once per backend after their folders exist
        from edgekit.profile import _inputs

        shape = tuple(int(d) for d in graph.output_tensors()[0].shape)
        _inputs(graph.input_tensors()[0], data, None, 0, shape[1:] if len(shape) > 1 else shape)
    return graph


def _int8_file(graph, model_path: Path, out: Path) -> Path:
    """The .tflite every backend builds: the model itself, or the quantized one written into `out`."""
    from edgekit.fileio import atomic_write_bytes

    if model_path.suffix == ".tflite" and graph.model_bytes == model_path.read_bytes():
        return model_path
    path = out / f"{graph.name}.int8.tflite"
    atomic_write_bytes(path, graph.model_bytes)
    return path


def _one(name, graph, tflite: Path, board, out: Path, trees: dict, data, runs, port, measured) -> dict:
    """One backend's entry: build, then profile when it can run here."""
    from edgekit.build import build
    from edgekit.project import check_pair
    from edgekit.routes import refusal

    backend, kernels = BACKENDS[name]
    entry = _empty_entry(name, backend, kernels)
    tree = trees.get(kernels) if kernels else None
    verdict = check_pair(graph, board, backend)
    if not verdict:
        return dict(entry, status="skipped", reason=refusal(graph, board, backend, verdict.reason))
    if kernels and tree is None:
        return dict(entry, status="skipped", reason=_no_tree_reason(kernels))
    folder = out / name
    entry.update(folder=str(folder), tree=str(tree.path) if tree else None)
    started = time.monotonic()
    try:
        result = build(tflite, board.name, folder, backend=backend, quiet=True,
                       tflm_dir=tree.path if tree else None, tflm_kernels=kernels)
        manifest = result["manifest"]
        entry.update(_sizes(folder, manifest))
        entry["arena_reserved_bytes"] = manifest.get("arena_bytes")
        if not manifest.get("firmware"):
            entry.update(status="built", reason=f"not compiled: {result['stages'][-1].get('skipped', '')}")
            return entry
        if not measured:
            entry.update(status="built", reason=f"no device: connect a {board.name} and pass --port to measure "
                                                f"latency, arena and stack")
            return entry
        if port is not None:
            from edgekit.flash import flash_build

            flash_build(folder, port=port)
        from edgekit.profile import profile_build

        report = profile_build(folder, runs=runs, data=data, port=port, keep_outputs=True)
    except EdgekitError as error:
        return dict(entry, status="failed", reason=str(error), seconds=round(time.monotonic() - started, 1))
    entry.update(_figures(report))
    entry["seconds"] = round(time.monotonic() - started, 1)
    return entry


def _empty_entry(name, backend, kernels) -> dict:
    return {"backend": name, "engine": backend, "kernels": kernels, "status": None, "reason": None, "folder": None,
            "tree": None, "instructions": None, "latency_us": None, "arena_bytes": None,
            "arena_reserved_bytes": None, "stack_bytes": None, "code_bytes": None, "rodata_bytes": None,
            "flash_bytes": None, "ram_static_bytes": None, "max_abs_diff_reference": None,
            "mismatched_values_reference": None, "deterministic": None, "ops": {}, "layers": [], "outputs": None,
            "seconds": None}


def _sizes(folder: Path, manifest: dict) -> dict:
    """Code (executable sections) and read-only data (.rodata*) of the image, from its ELF; flash and static
    RAM from the build's sizes."""
    from edgekit.build_folder import code_and_rodata_bytes

    sizes = manifest.get("sizes") or {}
    found = {"flash_bytes": sizes.get("flash_bytes"), "ram_static_bytes": sizes.get("ram_static_bytes")}
    firmware = manifest.get("firmware")
    if firmware and (folder / firmware).is_file():
        found.update(code_and_rodata_bytes(folder / firmware))
    return found


def _figures(report: dict) -> dict:
    """What compare keeps of a profile report."""
    instructions = (report.get("instructions") or {}).get("median")
    ops: dict = {}
    for row in report.get("layers") or []:
        op = ops.setdefault(row["op"], {"layers": 0, "instructions": 0 if instructions is not None else None,
                                         "us": 0.0})
        op["layers"] += 1
        op["us"] += row["us"]
        if row.get("instructions") is not None and op["instructions"] is not None:
            op["instructions"] += row["instructions"]
    for op in ops.values():
        op["us"] = round(op["us"], 3)
    return {"status": "ok", "instructions": instructions, "latency_us": report["latency_us"]["median"],
            "latency_kind": report.get("latency_kind"), "arena_bytes": report.get("arena_bytes"),
            "arena_reserved_bytes": report.get("arena_reserved_bytes"), "stack_bytes": report.get("stack_bytes"),
            "max_abs_diff_reference": report.get("max_abs_diff"),
            "mismatched_values_reference": report.get("mismatched_values"),
            "deterministic": report.get("deterministic"), "ops": ops, "layers": report.get("layers") or [],
            "outputs": report.get("outputs")}


def _document(graph, board, entries, runs, data, out: Path, measured: bool, port) -> dict:
    metric = "instructions" if board.emulated else ("latency_us" if measured else None)
    ran = [e for e in entries if e["status"] == "ok"]
    pairs = []  # the raw outputs are compared here, then dropped from the entries
    for a, b in itertools.combinations(ran, 2):
        x, y = np.asarray(a["outputs"], dtype=np.int64), np.asarray(b["outputs"], dtype=np.int64)
        pairs.append({"a": a["backend"], "b": b["backend"], "max_abs_diff": int(np.abs(x - y).max()),
                      "mismatched_values": int((x != y).sum())})
    op_names = sorted({op for e in ran for op in e["ops"]})
    by_op = []
    for op in op_names:
        row = {"op": op, "layers": {}, "instructions": {}, "us": {}}
        for e in ran:
            figures = e["ops"].get(op)
            row["layers"][e["backend"]] = figures["layers"] if figures else 0
            row["instructions"][e["backend"]] = figures["instructions"] if figures else None
            row["us"][e["backend"]] = figures["us"] if figures else None
        by_op.append(row)
    if metric == "instructions":
        by_op.sort(key=lambda r: -max((v or 0) for v in r["instructions"].values()))
    for e in entries:
        e.pop("outputs", None)
    if not measured:
        missing = f"no device: connect a {board.name} and pass --port to measure latency, arena and stack"
    else:
        missing = None
    return {
        "format": FORMAT, "model": graph.name, "model_sha256": graph.sha256, "board": board.name,
        "emulated": board.emulated, "metric": metric, "measured": measured, "missing": missing,
        "port": port, "runs": runs, "data": str(data) if data is not None else "random int8 (seed 0)",
        "macs": _macs(graph), "folder": str(out), "backends": entries, "pairs": pairs, "by_op": by_op,
    }


def _macs(graph) -> int | None:
    from edgekit.analyze import layers

    return sum(row["macs"] for row in layers(graph)) or None
