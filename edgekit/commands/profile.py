"""`edgekit profile`: latency, memory and agreement with the reference, measured on the device."""

import sys

import click

from edgekit.console import fmt, json_option, print_json, progress, stdout_console, table


@click.command("profile")
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--port", help="Serial port of the board, or socket://HOST:PORT; emulated and host boards need none.")
@click.option("--runs", type=int, help="Timed inferences (default 10; with --data, up to 50 samples).")
@click.option("--data", type=click.Path(dir_okay=True), help="Inputs (.npz/.npy, float: quantized here) and labels.")
@click.option("--runner", help="Runner that starts the device (emulated/host boards), instead of the board's.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a per-layer latency bar chart (PNG).")
@click.option("--timeout", type=click.FloatRange(min=0.1),
              help="Seconds to allow each inference of the first input (default: the model's MACs at 50 cycles "
                   "each on the board's clock, at least 5 s per phase); later ones get 10x the measured duration.")
@click.option("--benchmark-model", type=click.Path(dir_okay=False),
              help="adb/ssh runners: LiteRT's benchmark_model (a local binary to copy, or a path on the device).")
@click.option("--validate-layers", is_flag=True,
              help="Also fetch every layer's int8 output from the device (ek-layer-out) for 3 inputs and compare it "
                   "with TFLite Micro's and the float model's intermediate tensors; names the first layer that "
                   "diverges.")
@json_option
def command(build_dir, port, runs, data, runner, plot, timeout, benchmark_model, validate_layers, as_json):
    """Measure latency, memory and output agreement of the build in BUILD_DIR on its device.

    \b
    Emulated boards are started in QEMU and stopped afterwards; their time is the emulator's virtual time
    (instructions), labelled as emulated.
    """
    from edgekit.profile import profile_build

    # rich leaves a blank line on a non-terminal stderr: show the bar only to people.
    with progress(quiet=as_json or not sys.stderr.isatty()) as bar:
        report = profile_build(build_dir, runs=runs, data=data, port=port, runner=runner, plot=plot, progress=bar,
                               extra={"benchmark_model": benchmark_model} if benchmark_model else None,
                               timeout=timeout, validate_layers=validate_layers)
    if as_json:
        print_json(report)
        return
    if report.get("benchmark_model"):
        print_benchmark(report)
        return
    print_report(report)


def print_report(report: dict) -> None:
    """The human report (tables); `edgekit build --profile` can print the same."""
    console = stdout_console()
    lat = report["latency_us"]
    unit = "µs (emulated)" if report["emulated"] else "µs"
    rows = [[f"latency {unit}", lat["min"], lat["median"], lat["max"]]] if lat else []
    if report.get("instructions"):
        ins = report["instructions"]
        rows.append(["instructions", ins["min"], ins["median"], ins["max"]])
    console.print(f"[bold]{report['model']}[/bold] on {report['board']} ({report['backend']} backend), "
                  f"{report['runs']} runs", highlight=False)
    if rows:
        console.print(table("Latency", ["", "min", "median", "max"], rows))
    if report["emulated"] or not lat:
        console.print(f"[dim]{report['latency_kind']}[/dim]")
    memory = [["arena used", report["arena_bytes"]], ["arena reserved", report["arena_reserved_bytes"]],
              ["peak stack", report["stack_bytes"]], ["flash (text+data)", report["flash_bytes"]]]
    if report.get("macs"):
        memory.append(["MACs", report["macs"]])
    if report.get("instructions_per_mac"):
        memory.append(["instructions / MAC", report["instructions_per_mac"]])
    console.print(table("Memory (bytes)", ["", "value"], memory))
    check = [["max |diff| (int8 steps)", report["max_abs_diff"]], ["cosine", report["cosine"]],
             ["rmse", report["rmse"]], ["mae", report["mae"]], ["l2r", report["l2r"]],
             ["deterministic", report["deterministic"]]]
    if report.get("top1_agreement") is not None:
        check.insert(5, ["top-1 agreement", f"{report['top1_agreement']:.1%}"])
    if report.get("accuracy") is not None:
        check += [["accuracy (device)", f"{report['accuracy']:.1%}"],
                  ["accuracy (reference)", f"{report['reference_accuracy']:.1%}"]]
    console.print(table("Outputs vs TFLite Micro", ["", "value"], check))
    console.print(f"[dim]inputs: {report['data']}[/dim]", highlight=False)
    layers = report.get("layers") or []
    if layers and lat:
        total = sum(row["ticks"] for row in layers) or 1
        columns = ["#", "Keras layer", "op", "µs" + (" (emulated)" if report["emulated"] else ""), "share"]
        rows = []
        for row in layers:
            cells = [row["index"], row.get("layer") or "-", row["op"], row["us"], f"{row['ticks'] / total:.1%}"]
            if report["emulated"]:
                cells.append(row["instructions"])
            rows.append(cells)
        if report["emulated"]:
            columns.append("instructions")
        console.print(table("Layers (median)", columns, rows, right_align_from=3))
    if report.get("layer_validation"):
        print_layer_validation(console, report["layer_validation"])
    if report.get("plot"):
        console.print(f"per-layer chart written to {fmt(report['plot'])}", highlight=False)


def print_benchmark(report: dict) -> None:
    """A benchmark_model run on a phone or Linux board."""
    console = stdout_console()
    lat = report["latency_us"]
    memory = report.get("memory_mb") or {}
    console.print(f"[bold]{report['model']}[/bold] ({report.get('variant') or 'int8'}) on {report['board']} with "
                  f"{report['accelerator']}, {report['runs']} runs", highlight=False)
    rows = [["latency µs", lat["min"], lat["avg"], lat["max"], lat["std"]]]
    console.print(table("Latency (LiteRT benchmark_model)", ["", "min", "avg", "max", "std"], rows))
    rows = [["init µs", report.get("init_us")], ["first inference µs", report.get("first_inference_us")],
            ["warm-up avg µs", report.get("warmup_avg_us")], ["memory init MB", memory.get("init")],
            ["memory overall MB", memory.get("overall")], ["peak memory MB", memory.get("peak")]]
    console.print(table("Start-up and memory", ["", "value"], rows))
    console.print(f"[dim]{report['latency_kind']}[/dim]")


def print_layer_validation(console, v: dict) -> None:
    """Per-layer figures against the reference (and the float model), and the first layer that diverges."""
    has_float = any("float" in row for row in v["layers"])
    columns = ["#", "Keras layer", "op", "max |diff| steps", "cos", "rmse"]
    if has_float:
        columns += ["float cos", "float rmse", "float max |diff|"]
    rows = []
    for row in v["layers"]:
        r = row["reference"]
        cells = [row["index"], row.get("layer") or "-", row["op"], r["max_abs_diff"], f"{r['cos']:.6f}",
                 f"{r['rmse']:.4g}"]
        if has_float:
            f = row.get("float") or {}
            cells += [f"{f['cos']:.5f}" if f else "-", f"{f['rmse']:.4g}" if f else "-",
                      f"{f['max_abs_diff']:.4g}" if f else "-"]
        rows.append(cells)
    title = (f"Layers vs TFLite Micro{' and the float model' if has_float else ''} ({v['samples']} input"
             f"{'s' * (v['samples'] != 1)})")
    console.print(table(title, columns, rows, right_align_from=3))
    first = v.get("first_divergent")
    if first:
        console.print(f"[red]first layer that diverges from the reference: {first['label']} "
                      f"(max |diff| {first['max_abs_diff']} int8 steps)[/red]", highlight=False)
    else:
        console.print(f"[green]every layer within {v['diverge_steps']} int8 step of the reference[/green]",
                      highlight=False)
