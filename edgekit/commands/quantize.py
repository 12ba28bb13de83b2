"""`edgekit quantize MODEL --data DATA -o OUT.tflite`: full-int8 post-training quantization with a report."""

from pathlib import Path

import click

from edgekit.console import fmt, info, json_option, print_json, stdout_console, table
from edgekit.quantize import DEFAULT_CALIBRATION_SAMPLES, DEFAULT_EVAL_SAMPLES
from edgekit.tasks import TASKS


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data", default=None, type=click.Path(path_type=Path),
              help="Calibration/evaluation data: .npz (x[,y] or x_train/y_train/x_test/y_test), .npy, "
                   "or a folder of images or .wav files (one sub-folder per class for labels). Required for "
                   "float models; optional for a .tflite already int8 inside with float input/output.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the int8 .tflite (default: MODEL_int8.tflite in the current folder).")
@click.option("--calibration-samples", type=int, default=DEFAULT_CALIBRATION_SAMPLES, show_default=True,
              help="Training samples used to calibrate activation ranges.")
@click.option("--eval-samples", type=int, default=DEFAULT_EVAL_SAMPLES, show_default=True,
              help="Held-out samples used to compare float and int8.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Also save a PNG of the per-layer quantization error.")
@click.option("--variant", type=click.Choice(["fp16", "dynamic", "int8", "int8-float-io"]), default="int8",
              show_default=True, help="int8 (fully int8, for microcontrollers, NPUs and DSPs) or a LiteRT variant "
                                      "for phones and Linux boards: fp16, dynamic (int8 weights), int8-float-io.")
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="What the model does, which sets how labels are read and the metrics reported (default: "
                   "detected from the model's output and the labels).")
@click.option("--input-range", default=None, metavar="LOW,HIGH",
              help="What image pixels 0..255 of a --data folder become (default 0,1; MobileNet: -1,1).")
@json_option
def command(model, data, output, calibration_samples, eval_samples, plot, variant, task, input_range, as_json):
    """Quantize MODEL (.keras, .h5, SavedModel folder or float .tflite) to a fully int8 .tflite.

    int8 weights per channel, int8 activations, int8 input and output, batch fixed to 1. The report compares the
    float and int8 models on held-out data and names the layers that lose the most. A .tflite that is int8 inside
    with float input/output (QUANTIZE/DEQUANTIZE at its ends) only loses those ops; no calibration needed. One
    with int8 weights but float activations (weight-only) gets float weights back, then is quantized.
    """
    from edgekit.data import parse_input_range
    from edgekit.fileio import atomic_write_bytes, check_output_file
    from edgekit.quantize import quantize

    input_range = parse_input_range(input_range)
    suffix = variant.replace("-", "_")
    output = output or Path(f"{model.stem if model.suffix else model.name}_{suffix}.tflite")
    check_output_file(output, inputs=(model, data))  # before minutes of work, not after
    if variant != "int8":
        if plot is not None:
            from edgekit.errors import UsageError

            raise UsageError(f"--plot shows the per-layer error of the int8 variant; drop it or --variant {variant}")
        return _variant(model, data, output, variant, calibration_samples, eval_samples, as_json)
    if plot is not None:
        from edgekit.plots import check_path

        check_path(plot)
        check_output_file(plot, inputs=(model, data, output))
    result = quantize(model, data, calibration_samples=calibration_samples, eval_samples=eval_samples,
                      quiet=as_json, task=task, input_range=input_range)
    report = dict(result.report, output_path=str(output))
    if plot is not None:
        plot_layers(report, plot)
        report["plot"] = str(plot)
    atomic_write_bytes(output, result.tflite_bytes)
    if as_json:
        print_json(report)
        return
    _print_report(report)
    info(f"wrote {output} ({report['int8_bytes']:,} bytes)")


def _percent(value):
    return None if value is None else f"{100 * value:.2f}%"


def _print_report(r: dict) -> None:
    console = stdout_console()
    rows = [["method", r["method"], None]]
    if r["labels"] and r["float_accuracy"] is not None:
        rows.append(["accuracy", _percent(r["float_accuracy"]), _percent(r["int8_accuracy"])])
    if r["eval_samples"]:
        rows += task_rows(r.get("task"), r.get("task_metrics"))
        if r["top1_agreement"] is not None:
            rows.append(["top-1 agreement", None, _percent(r["top1_agreement"])])
        rows += [
            ["cosine similarity of outputs", None, f"{r['cosine_similarity']:.5f}"],
            ["RMSE of outputs (int8 vs float)", None, fmt(r["rmse"])],
        ]
    rows += [
        ["model bytes", r["float_bytes"], r["int8_bytes"]],
        ["input", "float32", f"int8 scale {r['input']['scale']:.6g} zero point {r['input']['zero_point']}"],
        ["output", "float32", f"int8 scale {r['output']['scale']:.6g} zero point {r['output']['zero_point']}"],
    ]
    if not r["eval_samples"]:
        title = f"{r['model']}: float vs int8 (no data given: no output comparison)"
    elif not r["calibration_samples"]:
        title = f"{r['model']}: float vs int8 on {r['eval_samples']} samples (none needed for calibration)"
    else:
        title = (f"{r['model']}: float vs int8 on {r['eval_samples']} held-out samples "
                 f"({r['calibration_samples']} used for calibration)")
    console.print(table(title, ["", "float", "int8"], rows))
    if r["worst_layers"]:
        rows = [[l["index"], l.get("layer") or "-", l["op"], _short(l["tensor"], 50), l["sqnr_db"]]
                for l in r["worst_layers"]]
        console.print(table("Layers with the largest quantization error (lowest SQNR)",
                            ["#", "Keras layer", "op", "output tensor", "SQNR dB"], rows, right_align_from=4))


def task_rows(task, metrics) -> list:
    """[label, float, int8] rows of the task's own metrics (accuracy is printed apart, as before)."""
    if not task or not metrics:
        return []
    f, q = metrics.get("float") or {}, metrics.get("int8") or {}
    rows = [["task", task, None]]
    if "recall" in f:
        for key in f["recall"]:
            rows.append([f"recall, class {key}", _percent(f["recall"][key]), _percent(q["recall"].get(key))])
    for key, label in (("rmse", "RMSE vs targets"), ("mae", "MAE vs targets"), ("r2", "R²"),
                       ("reconstruction_mse", "reconstruction error (MSE)"), ("auc", "anomaly AUC")):
        if key in f:
            rows.append([label, fmt(f[key]), fmt(q.get(key))])
    return rows


def _short(name: str, width: int = 70) -> str:
    name = name.split(";")[0]
    return name if len(name) <= width else "..." + name[-(width - 3):]


def plot_layers(report: dict, path: Path) -> None:
    """Bars of SQNR per layer (higher is better), named by Keras layer, in columns of at most 40 layers."""
    from edgekit.errors import EdgekitError
    from edgekit.layer_names import label
    from edgekit.plots import layer_chart

    layers = [l for l in report.get("layers") or [] if l["sqnr_db"] is not None]
    if not layers:
        raise EdgekitError("no per-layer statistics to plot for this model")
    layer_chart([label(l["index"], l["op"], l.get("layer")) for l in layers], [l["sqnr_db"] for l in layers],
                path, xlabel="SQNR (dB, higher is better)", title=f"{report['model']}: per-layer int8 error")


def _variant(model, data, output, variant, calibration_samples, eval_samples, as_json) -> None:
    """A LiteRT variant (edgekit.variants): made, compared with the float model, timed on this computer."""
    from edgekit.fileio import atomic_write_bytes
    from edgekit.variants import make_all

    made, source, _ = make_all(model, data, names=(variant,), calibration_samples=calibration_samples,
                               eval_samples=eval_samples, quiet=as_json)
    row = dict(made[0].row(), model=source.loaded.name, output_path=str(output))
    atomic_write_bytes(output, made[0].tflite_bytes)
    if as_json:
        print_json(row)
        return
    latency = row["host_latency_ms"]
    rows = [["method", row["method"]], ["bytes", row["bytes"]],
            [row["metric"], f"{100 * row['float_value']:.2f}% float -> {100 * row['value']:.2f}%"],
            ["cosine similarity", f"{row['cosine']:.6f}"], ["RMSE", fmt(row["rmse"])],
            ["host latency (LiteRT, XNNPACK)", f"{latency['1']} ms at 1 thread, {latency['2']} ms at 2 (this "
                                               "computer's)"],
            ["suits", ", ".join(row["accelerators"])]]
    stdout_console().print(table(f"{row['model']}: {variant} vs float on {row['inputs']}", ["", "value"], rows))
    info(f"wrote {output} ({row['bytes']:,} bytes)")
