"""`edgekit analyze MODEL.tflite`: MACs, parameters, RAM and flash of a model, and whether it fits a board."""

import click

from edgekit.console import fmt, info, json_option, print_json, stdout_console, table


NOT_FITS_EXIT = 3  # `--fail-if-not-fits`: the analysis ran and its verdict is "does not fit"


def _kib(n) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KiB"


def _show(report: dict) -> None:
    console = stdout_console()
    head = f"[bold]{report['model']}[/bold]  {'int8' if report['int8'] else 'NOT fully int8'}  " \
           f"ops: {', '.join(report['ops'])}"
    console.print(head, highlight=False)
    rows = [[r["index"], r.get("layer") or "-", r["op"], "x".join(str(d) for d in r["output_shape"]), r["params"], r["macs"],
             r["other_ops"], r["activation_bytes"], r["live_bytes"]] for r in report["layers"]]
    console.print(table("Layers", ["#", "Keras layer", "op", "output", "params", "MACs", "other ops", "output bytes",
                                   "live bytes"], rows, right_align_from=3))
    arena = report["tflm_arena"]
    totals = [
        ["MACs", fmt(report["macs"]), "conv, depthwise, fully connected, matmul"],
        ["other ops", fmt(report["other_ops"]), "pooling, add, softmax... (one per element touched)"],
        ["parameters", fmt(report["params"]), f"{_kib(report['weights_bytes'])} of constant tensors"],
        ["model file", _kib(report["model_bytes"]), ""],
        ["peak activations", _kib(report["peak_activation_bytes"]), "lifetime-based plan (no in-place reuse)"],
        ["native arena", _kib(report["native_arena_bytes"]) if report.get("native_arena_bytes") else "-",
         "the native backend's planner (in place where kernels allow): what a build reserves"
         if report.get("native_arena_bytes") else "the native backend does not run this model"],
    ]
    if arena:
        totals.append(["TFLM arena (host)", _kib(arena["total_bytes"]),
                       f"measured: head {_kib(arena['head_bytes'])} + tail {_kib(arena['tail_bytes'])}, 64-bit"])
        totals.append(["TFLM arena (32-bit)", _kib(arena["total_bytes_32bit"]),
                       "estimate for a 32-bit MCU (pointer-sized structures halved)"])
    else:
        totals.append(["TFLM arena", "-", "TFLite Micro could not load the model"])
    console.print(table("Totals", ["", "value", "what"], totals, right_align_from=1))
    if report["board"]:
        board = report["board"]
        rows = []
        for what, key, breakdown in (("RAM", "ram", report["ram_breakdown"]),
                                     ("flash", "flash", report["flash_breakdown"])):
            b = report[key]
            parts = " + ".join(f"{k.replace('_bytes', '').replace('_', ' ')} {_kib(v)}"
                             for k, v in breakdown.items() if v or k != "kernel_scratch_bytes")
            rows.append([what, _kib(b["needed_bytes"]), _kib(b["available_bytes"]),
                         None if b["margin_bytes"] is None else f"{b['margin_bytes'] / 1024:+,.1f} KiB "
                                                                f"({b['margin_percent']:+.1f}%)",
                         b["fits"], parts])
        console.print(table(f"{board['name']} ({board['core']}), {report['backend']} backend",
                            ["", "needed", "available", "margin", "fits", "needed ="], rows, right_align_from=1))
        verdict = "[green]fits[/green]" if report["fits"] else "[red]does not fit[/red]"
        console.print(f"{report['model']} {verdict} on {board['name']} with the {report['backend']} backend.")
        for tip in report["suggestions"]:
            console.print(f"  - {tip}", highlight=False)
    for note in report["notes"]:
        info(f"note: {note}")


@click.command("analyze")
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--board", "board_name", metavar="NAME", help="Check the fit against this board (see `edgekit boards`).")
@click.option("--backend", type=click.Choice(["tflm", "native"]), default="tflm", show_default=True,
              help="Runtime whose RAM and flash are estimated.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=str), metavar="FILE.png",
              help="Also draw the memory plan and per-layer MACs to this picture.")
@click.option("--fail-if-not-fits", is_flag=True,
              help=f"With --board: exit with status {NOT_FITS_EXIT} when the model does not fit (the report, "
                   "--json included, is printed first).")
@json_option
def command(model, board_name, backend, plot_path, fail_if_not_fits, as_json):
    """MACs, parameters, RAM (activation plan and TFLite Micro arena) and flash of a .tflite model.

    With --board, say whether it fits, by how much, and what would help when it does not.
    """
    from edgekit.errors import UsageError

    if fail_if_not_fits and not board_name:
        raise UsageError("--fail-if-not-fits needs --board NAME (the board to check the fit against)")
    from edgekit.analyze import analyze
    from edgekit.boards import load_board
    from edgekit.tflite_model import load_tflite

    board = load_board(board_name) if board_name else None
    if plot_path:
        from edgekit.plots import check_path

        check_path(plot_path)
    graph = load_tflite(model)
    report = analyze(graph, board=board, backend=backend)
    if plot_path:
        from edgekit.plots import analysis_figure

        report["plot"] = str(analysis_figure(report, plot_path))
    if as_json:
        print_json(report)
    else:
        _show(report)
        if plot_path:
            info(f"wrote {plot_path}")
    if fail_if_not_fits and not report["fits"]:
        # the verdict, not an error: the report above is complete (and is the one JSON document on stdout)
        click.echo(f"error: {report['model']} does not fit {report['board']['name']} with the {report['backend']} "
                   f"backend (--fail-if-not-fits)", err=True)
        return NOT_FITS_EXIT
    return None
