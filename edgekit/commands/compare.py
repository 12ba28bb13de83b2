"""`edgekit compare`: the backends built and profiled on the same board, side by side."""

import sys

import click

from edgekit.console import fmt, json_option, print_json, progress, stdout_console, table


@click.command("compare")
@click.argument("model", type=click.Path())
@click.option("--board", "board_name", required=True, help="Target board (see `edgekit boards`).")
@click.option("--backends", default="native,tflm-reference,tflm-cmsis-nn", show_default=True,
              help="Comma-separated: native, tflm-reference, tflm-cmsis-nn.")
@click.option("--data", type=click.Path(exists=True), help="Inputs (and calibration data for a float model).")
@click.option("-o", "--output", "out_dir", type=click.Path(), help="Folder (default: compare-<model>-<board>): one "
              "build per backend and compare.json.")
@click.option("--runs", type=int, help="Timed inferences per backend (default 3).")
@click.option("--port", help="Serial port of a real board (without it: sizes only).")
@click.option("--tflm-dir", "tflm_dirs", multiple=True, type=click.Path(file_okay=False),
              help="A TFLite Micro tree made by create_tflm_tree.py (repeat for reference and CMSIS-NN trees; "
                   "default: $TFLM_DIR, $TFLM_DIR_CMSIS_NN).")
@json_option
def command(model, board_name, backends, data, out_dir, runs, port, tflm_dirs, as_json):
    """Build and profile MODEL with each backend on one board, side by side.

    \b
    Emulated boards: instructions (QEMU -icount); host: time on this computer; real boards: latency with
    --port, else sizes only. Per model and per op type: instructions or latency, arena used, peak stack, code
    and read-only data, max_abs_diff between backends and against TFLite Micro's reference interpreter.
    A backend that cannot run here (e.g. no TFLite Micro tree) is skipped with the reason.
    """
    from edgekit.compare import compare, parse_backends

    names = parse_backends(backends)
    with progress(quiet=as_json or not sys.stderr.isatty()) as bar:
        document = compare(model, board_name, names, data=data, out_dir=out_dir, runs=runs, port=port,
                           tflm_dirs=tflm_dirs, progress=bar, quiet=as_json)
    if as_json:
        print_json(document)
        return
    print_document(document)


ROWS = [("instructions", "instructions (median)"), ("latency_us", "latency µs (median)"),
        ("arena_bytes", "arena used B"), ("arena_reserved_bytes", "arena reserved B"), ("stack_bytes", "peak stack B"),
        ("code_bytes", "code (.text) B"), ("rodata_bytes", "read-only data B"), ("flash_bytes", "flash B"),
        ("ram_static_bytes", "static RAM B"), ("max_abs_diff_reference", "max_abs_diff vs reference")]


def print_document(document: dict) -> None:
    """The tables: one column per backend, then per op type, then the pairs."""
    console = stdout_console()
    entries = document["backends"]
    names = [e["backend"] for e in entries]
    unit = " (emulated)" if document["emulated"] else ""
    rows = [[label + (unit if key == "latency_us" else ""), *(e[key] for e in entries)] for key, label in ROWS
            if any(e[key] is not None for e in entries)]
    rows.append(["status", *(e["status"] for e in entries)])
    console.print(table(f"edgekit compare: {document['model']} on {document['board']} ({document['runs']} "
                        f"run{'s' * (document['runs'] != 1)} each)",
                        ["", *names], rows))
    ran = [e["backend"] for e in entries if e["status"] == "ok"]
    if document["by_op"]:
        key = "instructions" if document["metric"] == "instructions" else "us"
        op_rows = [[r["op"], *(f"{fmt(r[key][n])} ({r['layers'][n]})" for n in ran)] for r in document["by_op"]]
        console.print(table(f"per op type: {'instructions' if key == 'instructions' else 'µs'} (layers)",
                            ["op", *ran], op_rows))
    if document["pairs"]:
        console.print(table("between backends", ["a", "b", "max_abs_diff", "mismatched values"],
                            [[p["a"], p["b"], p["max_abs_diff"], p["mismatched_values"]] for p in document["pairs"]],
                            right_align_from=2))
    for e in entries:
        if e["status"] != "ok" and e["reason"]:
            console.print(f"{e['backend']} {e['status']}: {e['reason']}", highlight=False, markup=False)
    if document.get("missing"):
        console.print(document["missing"], highlight=False, markup=False)
    console.print(f"written: {document['folder']}/compare.json", highlight=False, markup=False)
