"""`edgekit profile`: latency, memory and output agreement measured on the device itself.

As MLPerf Tiny's runner does, each input is uploaded once and run with `infer N W` (N timed inferences, one
warm-up on the first input, not timed): the application restores the uploaded input before each inference
(docs/protocol.md). Then come the exact tick count of the N runs, the per-layer ticks and the raw output bytes of
the last one. The outputs are compared with TFLite Micro's host interpreter on the same int8 inputs
(edgekit.reference), with the metrics ST's `validate` reports (acc, rmse, mae, l2r, cos) plus the max difference
in int8 steps and top-1 agreement; one more inference of the last input, without uploading it again, must give
the same output (`deterministic`).

On an emulated board time is QEMU's virtual time under `-icount shift=0` (one instruction per nanosecond), so the
ticks become instruction counts; that time is reported as emulated, never as a real board's latency.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from edgekit.errors import EdgekitError, UsageError
from edgekit.build_folder import MANIFEST
from edgekit.flash import image_flash_bytes, load_build, open_device

DEFAULT_RUNS = 10
MAX_DATA_SAMPLES = 50  # default number of --data samples run on the device
# Time allowed for an inference before the device is given up on (the first `infer`; later ones get ten times the
# measured time): the model's MACs at a pessimistic CYCLES_PER_MAC on the board's clock, never under INFER_FLOOR
# seconds per phase (warm-ups, timed runs). Emulated boards run at QEMU's speed, not the board's clock.
CYCLES_PER_MAC = 50  # TFLite Micro's reference kernels take ~10-30 on a Cortex-M; the native kernels ~2-5
EMULATED_INSTRUCTIONS_PER_SECOND = 500e6  # QEMU with -icount shift=0 on a CI machine
HOST_CYCLES_PER_SECOND = 1e9  # the host board (clock_hz = 0)
INFER_FLOOR = 5.0  # seconds: the least a phase of `infer` is given
UNKNOWN_MACS_SECONDS = 60.0  # per inference when the MACs cannot be counted
MEASURED_MARGIN = 10  # later inferences may take this many times the first one's duration
HOST_CLOCK_MARGIN = 10  # device time over host time accepted (an emulator's virtual time may run ahead)


def profile_build(build_dir, runs: int | None = None, data=None, port: str | None = None, runner: str | None = None,
                  plot=None, seed: int = 0, progress=None, timeout: float | None = None,
                  keep_outputs: bool = False, extra: dict | None = None, validate_layers: bool = False) -> dict:
    """Profile the build on its device and return the report (the --json document).

    `timeout`: seconds allowed for each inference of the first `infer` (instead of the estimate from the MACs and
    the board's clock, see inference_budget); later ones get ten times the measured duration. `keep_outputs`:
    the report gets `outputs`, the raw output values of each input's last inference (edgekit.compare compares
    backends with them). `validate_layers`: also each layer's output for a few inputs, against the reference's
    and the float model's intermediate tensors (edgekit.validate_layers; kept in edgekit-validate.json).
    """
    from edgekit.fileio import MAX_MODEL_BYTES, read_input_file
    from edgekit.tflite_model import load_tflite

    if plot:
        from edgekit.plots import check_path

        check_path(plot)  # before the device run, not after it
    build = load_build(build_dir)
    if validate_layers and build.manifest.get("backend") != "native":
        _refuse_layer_validation(build)
    benchmarked = _benchmark_model(build, runner, port, runs, data, plot, extra)
    if benchmarked is not None:
        return benchmarked
    if build.model_path is None or not build.model_path.is_file():
        raise EdgekitError(f"build folder {build.dir} has no model file (manifest 'model'); rebuild with edgekit build")
    if runs is not None and runs < 1:
        raise UsageError(f"--runs must be at least 1, got {runs}")
    model_bytes = read_input_file(build.model_path, "model file", MAX_MODEL_BYTES)
    recorded = build.manifest.get("model_sha256")
    if not recorded:  # without it nothing proves the firmware runs this model: a hand-made or damaged manifest
        raise EdgekitError(f"{build.dir / MANIFEST} has no 'model_sha256', so nothing ties "
                           f"{build.model_path.name} to the firmware; rebuild with edgekit build")
    if hashlib.sha256(model_bytes).hexdigest() != recorded:
        raise EdgekitError(f"{build.model_path.name} changed since the build (its sha256 differs from the "
                           "manifest's); rebuild with edgekit build")
    graph = load_tflite(build.model_path)
    tin, tout = graph.input_tensors()[0], graph.output_tensors()[0]
    out_shape = tuple(int(d) for d in tout.shape)
    from edgekit.tasks import detect_task, graph_last_activation

    activation = graph_last_activation(graph)
    inputs, labels, model_task = _inputs(tin, data, runs, seed, out_shape[1:] if len(out_shape) > 1 else out_shape,
                                         activation)
    in_shape = tuple(int(d) for d in tin.shape)
    model_task = model_task or detect_task(in_shape[1:], out_shape[1:], None, activation)
    runs = runs or (min(len(inputs), MAX_DATA_SAMPLES) if data is not None else DEFAULT_RUNS)

    from edgekit.reference import run_reference

    used = min(len(inputs), runs)
    reference = run_reference(model_bytes, inputs[:used])

    task = progress.add_task("profiling", total=runs) if progress else None
    records = []
    with open_device(build, port=port, runner=runner) as session:
        device = session.device
        failed = [line for line in session.boot_lines if line.startswith("e-")]
        if failed:
            raise EdgekitError(f"the device reported {failed[0][2:].strip('[]')} at start")
        info = device.info()
        running = device.identity()["model"]
        expected = build.manifest.get("model_name")
        if expected:  # builds before the name was sanitized in the manifest: the firmware reports it sanitized
            from edgekit.codegen.common import device_model_name

            expected = device_model_name(expected)
        if running and expected and running != expected:
            raise EdgekitError(f"the device runs model '{running}' but the build is '{expected}'; flash it first "
                               "(edgekit flash)")
        _check_info(info, tin, tout, len(graph.operators), info.backend or build.manifest.get("backend"))
        memory = _checked_memory(device.memory(), build.board)
        tps = _ticks_per_second(info, build.board)
        if timeout:
            per_inference, floor, basis = timeout, timeout, f"--timeout {timeout:g} s each"
        else:
            per_inference, basis = inference_budget(build.board, _macs(build))
            floor = INFER_FLOOR
        measured = None  # seconds per inference, from the first `infer`
        for sample, count in enumerate(_runs_per_input(runs, used)):
            warmup = 1 if sample == 0 else 0
            device.load_input(inputs[sample].tobytes())
            started = time.monotonic()
            device.infer(count, warmup, per_inference=per_inference, floor=floor, basis=basis)
            elapsed = time.monotonic() - started
            if measured is None:
                measured = elapsed / (count + warmup)
                per_inference = MEASURED_MARGIN * measured
                basis = f"{per_inference:.3g} s each: {MEASURED_MARGIN}x the first inference's {measured:.3g} s"
            ticks = _checked_ticks(device.ticks(), count, elapsed, tps)
            layers = _checked_layers(device.layers(), ticks)
            record = {"sample": sample, "ticks": ticks / count, "layers": layers,
                      "output": np.frombuffer(device.output(), dtype=tout.dtype).copy()}
            records += [record] * count  # each timed inference, at their mean
            if progress:
                progress.advance(task, count)
        # the input survives inference: one more of the last input, not uploaded again, ends the same way
        device.infer(1, 0, per_inference=per_inference, floor=floor, basis=basis)
        again = np.frombuffer(device.output(), dtype=tout.dtype)
        deterministic = bool(np.array_equal(again, records[-1]["output"]))
        layer_validation = None
        if validate_layers:
            from edgekit.validate_layers import validate_layers as fetch_and_compare

            float_inputs = _dequantized(inputs[:used], tin)
            layer_validation = fetch_and_compare(build, graph, device, inputs[:used], float_inputs,
                                                 progress=progress)

    report = _report(build, info, memory, records, reference, labels, tout, model_task)
    report["deterministic"] = deterministic
    report["data"] = str(data) if data is not None else "random int8"
    if keep_outputs:
        last = {r["sample"]: r["output"] for r in records}
        report["outputs"] = [last[sample].astype(int).tolist() for sample in sorted(last)]
    if plot:
        plot_layers(report, plot)
        report["plot"] = str(plot)
    if layer_validation is not None:
        report["layer_validation"] = layer_validation
        _keep(build, layer_validation, "edgekit-validate.json")
    _keep(build, report)
    _refresh_report(build)
    return report


def _refresh_report(build) -> None:
    """A report.html already in the folder is rendered again with these measurements (never left stale)."""
    from edgekit.report import REPORT_FILE, write_report

    if (build.dir / REPORT_FILE).is_file():
        try:
            write_report(build.dir)
        except (EdgekitError, OSError) as error:
            from edgekit.console import info

            info(f"note: {build.dir / REPORT_FILE} was not refreshed ({error})")


def _refuse_layer_validation(build) -> None:
    """Before any work: only the native backend answers ek-layer-out (edgekit.validate_layers says why)."""
    backend = build.manifest.get("backend")
    cost = ""
    if build.model_path and build.model_path.is_file():
        from edgekit.tflite_model import load_tflite
        from edgekit.validate_layers import tflm_preserve_all_arena_bytes

        cost = (f" (its MicroInterpreter keeps them only with preserve_all_tensors: about "
                f"{tflm_preserve_all_arena_bytes(load_tflite(build.model_path)):,} bytes of activations in the arena, "
                "no reuse)")
    raise UsageError(f"--validate-layers needs the native backend; this build uses {backend}, whose application "
                     f"keeps no layer outputs{cost}; build with --backend native")


def _dequantized(inputs: np.ndarray, tensor) -> np.ndarray:
    """The int8 inputs as the float model takes them: (q - zero point) x scale."""
    if not len(tensor.scale):
        return inputs.astype(np.float32)
    return ((inputs.astype(np.float32) - float(tensor.zero_point[0])) * float(tensor.scale[0])).astype(np.float32)


def _keep(build, report: dict, name: str | None = None) -> None:
    """The report, kept in the build folder for `edgekit report` (edgekit-profile.json by default)."""
    import json

    from edgekit.build_folder import json_safe
    from edgekit.fileio import atomic_write_bytes
    from edgekit.report import PROFILE_FILE

    try:
        atomic_write_bytes(build.dir / (name or PROFILE_FILE), (json.dumps(json_safe(report), indent=1) + "\n").encode())
    except OSError as error:  # a read-only build folder: the report itself is still printed
        from edgekit.console import info

        info(f"note: could not keep the profile in {build.dir} ({error.strerror or error})")


def _benchmark_model(build, runner, port, runs, data, plot, extra) -> dict | None:
    """Phones (adb) and Linux boards given --benchmark-model (ssh): LiteRT's benchmark_model measures the shipped
    variant there; None when the device speaks edgekit's protocol instead."""
    from edgekit.runners import create_runner, runner_class

    cls = runner_class(build, runner)
    if not cls.capabilities.benchmark:
        return None
    chosen = create_runner(build, runner, port, extra=extra)
    if not getattr(chosen, "benchmarks", True):
        return None
    if data is not None or plot is not None:
        raise UsageError(f"{'--data' if data is not None else '--plot'} needs edgekit's device protocol; "
                         f"{build.board.name} is measured by LiteRT's benchmark_model (random inputs, no layers)")
    return chosen.benchmark(runs)


def inference_budget(board, macs) -> tuple[float, str]:
    """(seconds one inference may take, how that was found): the MACs at CYCLES_PER_MAC on the board's clock (QEMU's
    speed for emulated boards, the host's for the host board)."""
    if not macs:
        return UNKNOWN_MACS_SECONDS, f"{UNKNOWN_MACS_SECONDS:g} s each: the MACs are unknown"
    if board.emulated:
        rate, where = EMULATED_INSTRUCTIONS_PER_SECOND, "emulated"
    elif board.clock_hz:
        rate, where = float(board.clock_hz), board.name
    else:
        rate, where = HOST_CYCLES_PER_SECOND, board.name
    seconds = macs * CYCLES_PER_MAC / rate
    return seconds, f"{seconds:.3g} s each: {macs:,} MACs x {CYCLES_PER_MAC} cycles at {rate / 1e6:g} MHz, {where}"


# -- checks of the device's answers against the model, ek-info and the board --------------------------------------


def _check_info(info, tin, tout, operators: int, backend: str | None) -> None:
    """ek-info describes the model of this build: input and output sizes, and its layers: one per operator for
    TFLite Micro, at most that for the native backend (views such as RESHAPE run nothing)."""
    if info.input_bytes != tin.nbytes or info.output_bytes != tout.nbytes:
        raise EdgekitError(f"the device runs a different model (ek-info input {info.input_bytes} bytes, output "
                           f"{info.output_bytes}); the build expects {tin.nbytes} and {tout.nbytes}: "
                           "flash it first")
    if info.layers > operators:
        raise EdgekitError(f"the device runs a different model (ek-info layers {info.layers}, more than the "
                           f"{operators} operators of the build's model): flash it first")
    if backend == "tflm" and info.layers != operators:
        raise EdgekitError(f"the device runs a different model (ek-info layers {info.layers}; TFLite Micro runs "
                           f"each of the build's {operators} operators): flash it first")


def _checked_memory(memory: dict, board) -> dict:
    """ek-mem within the board: the arena in its RAM (and PSRAM), the stack in its RAM."""
    limits = {"arena": board.ram_bytes + board.psram_bytes, "arena_used": board.ram_bytes + board.psram_bytes,
              "stack": board.ram_bytes}
    for key, limit in limits.items():
        value = memory.get(key)
        if value is not None and limit and value > limit:
            where = "RAM and PSRAM" if key != "stack" else "RAM"
            raise EdgekitError(f"the device reported ek-mem {key.replace('_', '-')} {value:,} bytes, more than the "
                               f"{limit:,} bytes of {board.name}'s {where}; expected at most that")
    return memory


def _ticks_per_second(info, board) -> int:
    return info.ticks_per_second or int(board.emulator.get("systick_hz", 0)) or 1_000_000


def _checked_ticks(answer: tuple[int, int], runs: int, elapsed: float, tps: int) -> int:
    """The ticks of the `runs` timed inferences just run: for that many runs, and no more time than the host saw
    pass (HOST_CLOCK_MARGIN times, plus a second: an emulator's virtual time may run ahead of the host's)."""
    ticks, timed = answer
    if timed != runs:
        raise EdgekitError(f"the device reported ek-ticks for {timed} runs after 'infer {runs}'; expected {runs}")
    seconds = ticks / tps
    if seconds > HOST_CLOCK_MARGIN * elapsed + 1.0:
        raise EdgekitError(f"the device reported ek-ticks {ticks:,} ({seconds:.3g} s at {tps:,} ticks/s) for "
                           f"{runs} inference{'s' * (runs != 1)} that took {elapsed:.3g} s on the host; expected "
                           f"at most {HOST_CLOCK_MARGIN}x that")
    return ticks


def _checked_layers(layers: list, ticks: int) -> list:
    """The layers of the last inference fit in the ticks of the timed runs (they ran inside them, same clock)."""
    total = sum(t for _, _, t in layers)
    if total > ticks + len(layers):
        raise EdgekitError(f"the device reported ek-layers ticks summing to {total:,}, more than the {ticks:,} "
                           "ticks of the timed runs (ek-ticks); expected at most that")
    return layers


def _runs_per_input(runs: int, inputs: int) -> list[int]:
    """How many of the `runs` timed inferences each input gets: spread evenly, the first inputs one more."""
    share, extra = divmod(runs, inputs)
    return [share + (1 if i < extra else 0) for i in range(min(runs, inputs))]


# -- inputs ---------------------------------------------------------------------------------------------------


def _inputs(tin, data, runs, seed, output_shape=None, last_activation=None):
    """(int8 inputs [S, ...], labels or None): quantized from --data, or random over the int8 range.

    --data is read by edgekit.data like every other command's: the file's test split if it has one, else all its
    samples; int8 samples are taken as already quantized, float ones are quantized with the input's scale.
    """
    from edgekit.data import load_dataset

    dtype = np.dtype(tin.dtype)
    shape = tuple(int(d) for d in tin.shape)
    if data is None:
        count = runs or DEFAULT_RUNS
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        if info is None:
            raise EdgekitError(f"the model's input is {dtype.name}; profile needs an integer (int8) model")
        rng = np.random.default_rng(seed)
        return rng.integers(info.min, info.max + 1, size=(count, *shape), dtype=dtype), None, None
    sample_shape = shape[1:] if len(shape) > 1 and shape[0] == 1 else shape
    dataset = load_dataset(data, input_shape=sample_shape, output_shape=output_shape, keep_int8=dtype == np.int8,
                           last_activation=last_activation)
    x, y = dataset.evaluation_samples()
    x = x.reshape(len(x), *shape)
    if x.dtype != dtype:
        scale = float(tin.scale[0]) if len(tin.scale) else 0.0
        zero_point = int(tin.zero_point[0]) if len(tin.zero_point) else 0
        if not scale or dtype.kind not in "iu":
            raise EdgekitError("the model's input has no quantization scale; expected a fully int8 model")
        info = np.iinfo(dtype)
        x = np.clip(np.round(x.astype(np.float64) / scale) + zero_point, info.min, info.max).astype(dtype)
    return x, y, dataset.task


# -- the report -----------------------------------------------------------------------------------------------


def _stats(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def _report(build, info, memory, records, reference, labels, tout, task="classification") -> dict:
    board = build.board
    tps = _ticks_per_second(info, board)
    ticks = np.array([r["ticks"] for r in records], dtype=np.float64)
    report = {
        "board": board.name, "backend": info.backend or build.manifest.get("backend"),
        "model": build.model_path.name, "runs": len(records), "emulated": board.emulated,
        "ticks_per_second": tps,
        "latency_us": _stats(ticks * 1e6 / tps),
        "latency_kind": ("emulated: QEMU virtual time with -icount shift=0 (1 instruction = 1 ns), not a real "
                         "board's latency" if board.emulated else
                         "host computer" if board.arch == "host" else "measured on the device"),
    }
    untimed = (board.data.get("profile") or {}).get("latency")  # the board says its clock means nothing
    if untimed:
        report.update(latency_us=None, latency_kind=str(untimed))
    macs = _macs(build)
    report["macs"] = macs
    if board.emulated:
        instructions = ticks * 1e9 / tps
        report["instructions"] = {k: int(round(v)) for k, v in _stats(instructions).items()}
        report["instructions_per_mac"] = (round(report["instructions"]["median"] / macs, 3) if macs else None)
    report["arena_bytes"] = memory.get("arena_used") if memory.get("arena_used") is not None else memory.get("arena")
    report["arena_reserved_bytes"] = memory.get("arena")
    report["stack_bytes"] = memory.get("stack") or None
    report["flash_bytes"] = _flash_bytes(build)
    report.update(_validation(records, reference, labels, tout, task))
    report["layers"] = _layers(records, tps, board.emulated)
    if untimed:
        report["layers"] = [{**row, "ticks": None, "us": None} for row in report["layers"]]
    _name_device_layers(build, report["layers"])
    return report


def _name_device_layers(build, rows: list[dict]) -> None:
    """Each device layer gets its graph operator and Keras layer (the manifest's maps; views run no layer)."""
    if not rows:
        return
    operators = build.device_operators(len(rows))
    names = build.layer_names()
    for row in rows:
        operator = operators[row["index"]] if row["index"] < len(operators) else row["index"]
        row["operator"] = operator
        row["layer"] = names[operator] if operator < len(names) else None


def _flash_bytes(build) -> int | None:
    if build.board.arch == "host" and "text" not in build.sizes:
        return None  # a host executable's size says nothing about a microcontroller's flash
    try:
        return image_flash_bytes(build)
    except OSError:
        return None


def _macs(build) -> int | None:
    """Multiply-accumulates per inference: from the manifest, else counted by edgekit.analyze when it exists."""
    for key in ("macs", "total_macs"):
        if build.manifest.get(key):
            return int(build.manifest[key])
    try:
        from edgekit.analyze import layers
    except ImportError:
        return None
    from edgekit.tflite_model import load_tflite

    return sum(row["macs"] for row in layers(load_tflite(build.model_path))) or None


def _validation(records, reference, labels, tout, task="classification") -> dict:
    """Device vs TFLite Micro on the same inputs, and vs the labels when given (ST validate's metrics)."""
    from edgekit.tasks import CLASS_TASKS, agreement, task_metrics

    device = np.stack([r["output"].reshape(-1) for r in records]).astype(np.int64)
    ref = np.stack([reference[r["sample"]].reshape(-1) for r in records]).astype(np.int64)
    scale = float(tout.scale[0]) if len(tout.scale) else 1.0
    zero_point = int(tout.zero_point[0]) if len(tout.zero_point) else 0
    d = (device - zero_point) * scale
    r = (ref - zero_point) * scale
    diff = d - r
    norms = np.linalg.norm(d, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.where(norms > 0, (d * r).sum(axis=1) / np.where(norms > 0, norms, 1), np.where(
        np.all(d == r, axis=1), 1.0, 0.0))
    ref_norm = float(np.linalg.norm(r))
    result = {
        "max_abs_diff": int(np.abs(device - ref).max()),
        "mismatched_values": int((device != ref).sum()),
        "cosine": float(cos.mean()),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "mae": float(np.mean(np.abs(diff))),
        "l2r": float(np.linalg.norm(diff) / ref_norm) if ref_norm else float(np.linalg.norm(diff)),
        "task": task,
        "top1_agreement": agreement(task, r, d),  # None for regression and reconstruction: no top-1 there
    }
    result["accuracy"] = None
    if labels is not None:
        samples = np.array([r["sample"] for r in records])
        truth = labels[samples]
        device_metrics, reference_metrics = task_metrics(task, d, truth), task_metrics(task, r, truth)
        result["task_metrics"] = {"device": device_metrics, "reference": reference_metrics}
        if task in CLASS_TASKS:
            result["accuracy"] = device_metrics.get("accuracy")
            result["reference_accuracy"] = reference_metrics.get("accuracy")
    return result


def _layers(records, tps, emulated) -> list[dict]:
    """Median time of each layer over the runs (linear in layers x runs: a device may report thousands)."""
    if not records or not records[0]["layers"]:
        return []
    first = records[0]["layers"]
    column = {index: position for position, (index, _, _) in enumerate(first)}
    table = np.full((len(records), len(first)), np.nan)
    for row, record in enumerate(records):
        for index, _, t in record["layers"]:
            if index in column:
                table[row, column[index]] = t
    medians = np.nanmedian(table, axis=0)  # record 0 fills every column
    rows = []
    for (index, op, _), median in zip(first, medians):
        median = float(median)
        row = {"index": index, "op": op, "ticks": int(round(median)), "us": median * 1e6 / tps}
        if emulated:
            row["instructions"] = int(round(median * 1e9 / tps))
        rows.append(row)
    return rows


def plot_layers(report: dict, path) -> None:
    """Bars of the per-layer median time (instructions on emulated boards), named by Keras layer."""
    from edgekit.layer_names import label
    from edgekit.plots import layer_chart

    layers = report.get("layers") or []
    if not layers:
        raise EdgekitError("the device reported no per-layer times (ek-layers); nothing to plot")
    if report.get("latency_us") is None:
        raise EdgekitError(f"{report.get('board')} gives no latency ({report.get('latency_kind')}); nothing to plot")
    emulated = report.get("emulated")
    values = [row["instructions"] / 1e3 if emulated else row["us"] for row in layers]
    unit = "k instructions" if emulated else "us"
    layer_chart([label(row["index"], row["op"], row.get("layer")) for row in layers], values, path,
                xlabel="thousand instructions (QEMU, emulated)" if emulated else "microseconds",
                title=f"{report.get('model')} on {report.get('board')} ({report.get('backend')}): per-layer time, "
                      f"median of {report.get('runs')} runs, total {sum(values):,.0f} {unit}")
