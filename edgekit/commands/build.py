"""`edgekit build`: the pipeline, from a model to a project (and firmware) for one board."""

import click

from edgekit.console import fmt, info, json_option, print_json, progress, stdout_console, table


@click.command("build")
@click.argument("model", required=False, type=click.Path())
@click.option("--board", "board_name", help="Target board (see `edgekit boards`).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False),
              help="Build folder (default: build-<model>-<board>).")
@click.option("--backend", type=click.Choice(["tflm", "native"]),
              help="tflm (TFLite Micro, real boards' default) or native (interpreter-free C).")
@click.option("--data", type=click.Path(exists=True), help="Data for quantizing a float model (and for --profile).")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False), help="An edgekit.toml recipe.")
@click.option("--arena-bytes", type=int, help="Tensor arena size instead of the measured one (tflm backend).")
@click.option("--no-compile", is_flag=True, help="Generate the project only, even when the toolchain is here.")
@click.option("--flash", "do_flash", is_flag=True, help="Then flash the firmware (same as `edgekit flash`).")
@click.option("--profile", "do_profile", is_flag=True, help="Then profile on the device (same as `edgekit profile`).")
@click.option("--runs", type=int, help="Inferences for --profile.")
@click.option("--port", help="Serial port of the board, for --flash/--profile on hardware.")
@click.option("--tflm-dir", type=click.Path(file_okay=False),
              help="TFLite Micro tree made by create_tflm_tree.py (default: $TFLM_DIR), for --backend tflm.")
@click.option("--variant", type=click.Choice(["fp32", "fp16", "dynamic", "int8", "int8-float-io"]),
              help="Phones and Linux boards: the LiteRT variant to ship instead of the chosen one.")
@click.option("--tflm-kernels", type=click.Choice(["reference", "cmsis-nn"]),
              help="The kernels the tree must carry (host and QEMU boards; default: the tree's).")
@json_option
def command(model, board_name, out_dir, backend, data, recipe, arena_bytes, no_compile, do_flash, do_profile, runs,
            port, tflm_dir, tflm_kernels, variant, as_json):
    """Build MODEL (.keras/.h5/SavedModel with --data, or an int8 .tflite) for a board.

    \b
    Quantizes when needed, checks the model fits the board, generates the project (TFLite Micro for real
    boards, native C for emulated and host boards), compiles it when the board's toolchain is installed,
    and writes edgekit-build.json so that `edgekit flash DIR` and `edgekit profile DIR` need nothing else.
    """
    from edgekit.build import build

    _check_combination(no_compile, do_flash, do_profile, runs, port)
    with progress(quiet=as_json) as bar:
        result = build(model, board_name, out_dir, backend=backend, data=data, recipe=recipe,
                       arena_bytes=arena_bytes, compile=not no_compile, flash=do_flash, profile=do_profile,
                       runs=runs, port=port, quiet=as_json, progress=bar, tflm_dir=tflm_dir,
                       tflm_kernels=tflm_kernels, variant=variant)
    if as_json:
        print_json(result)
        return
    manifest = result["manifest"]
    analysis = result["analysis"]
    console = stdout_console()
    rows = []
    for stage in result["stages"]:
        detail = stage.get("skipped") or ""
        if stage["stage"] == "optimize":
            detail = _optimize_detail(stage)
        elif stage["stage"] == "quantize" and stage.get("report"):
            detail = _quantize_detail(stage["report"])
        elif stage["stage"] == "analyze":
            detail = (f"RAM {fmt(analysis['ram']['needed_bytes'])} of {fmt(analysis['ram']['available_bytes'])} B, "
                      f"flash {fmt(analysis['flash']['needed_bytes'])} of {fmt(analysis['flash']['available_bytes'])} B")
        elif stage["stage"] == "variants":
            detail = f"{len(stage['variants'])} LiteRT variants measured; chosen: {stage['chosen']}"
        elif stage["stage"] == "generate":
            detail = f"{manifest['project']} project in {stage['folder']}"
        elif stage["stage"] == "compile" and stage.get("firmware"):
            sizes = stage.get("sizes") or {}
            detail = f"{stage['firmware']}: flash {fmt(sizes.get('flash_bytes'))} B, static RAM " \
                     f"{fmt(sizes.get('ram_static_bytes'))} B"
            library = stage.get("tflm_library")
            if library:
                detail += (f"; TFLite Micro ({library['kernels']}) from the cache" if library["cache_hit"] else
                           f"; TFLite Micro ({library['kernels']}): {library['compiled']} files compiled into "
                           f"the cache")
        rows.append([stage["stage"], stage.get("seconds"), detail])
    console.print(table(f"edgekit build: {manifest['model_name']} on {manifest['board']} ({manifest['backend']})",
                        ["stage", "seconds", "result"], rows, right_align_from=1))
    variants = next((stage for stage in result["stages"] if stage["stage"] == "variants"), None)
    if variants:
        print_variants(variants, console)
    if manifest.get("mobile"):
        mobile = manifest["mobile"]
        console.print(f"LiteRT projects: {', '.join(f'{p}/' for p in mobile['projects'])} in {result['folder']} "
                      f"(model: {mobile['chosen']})", highlight=False)
    arena = manifest.get("arena_bytes")
    console.print(f"operators: {', '.join(manifest['ops'])}; arena {fmt(arena)} bytes"
                  + (" (external RAM)" if manifest.get("arena_in_psram") else ""), highlight=False)
    if not manifest.get("firmware") and not no_compile:
        info(f"not compiled: {result['stages'][-1].get('skipped', '')}")
    if not manifest.get("firmware") and manifest.get("expected_firmware"):
        info(f"after that build, `edgekit flash {result['folder']}` puts {manifest['expected_firmware']} on the board "
             "(--dry-run prints the commands)")
    if result.get("flash"):
        console.print(f"flashed with {result['flash'].get('runner')}", highlight=False)
    if result.get("profile"):
        from edgekit.commands.profile import print_report

        print_report(result["profile"])
    if result.get("report"):
        console.print(f"report: {result['report']}", highlight=False)


def _check_combination(no_compile, do_flash, do_profile, runs, port) -> None:
    """Options that mean nothing together are refused before anything is built, never ignored."""
    from edgekit.errors import UsageError

    if no_compile and (do_flash or do_profile):
        raise UsageError(f"--{'flash' if do_flash else 'profile'} needs the firmware, and --no-compile builds none; "
                         "drop one of them")
    if runs is not None and not do_profile:
        raise UsageError("--runs is the number of inferences of --profile; add --profile or drop --runs")
    if port is not None and not (do_flash or do_profile):
        raise UsageError("--port is the board's serial port for --flash/--profile; add one of them or drop --port")


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _optimize_detail(stage: dict) -> str:
    """MACs and parameters before -> after, and the float accuracy (or agreement) they cost."""
    before, after = stage["before"], stage["after"]
    text = (f"{' + '.join(stage['steps'])}: MACs {fmt(before['macs'])} -> {fmt(after['macs'])}, "
            f"params {fmt(before['params'])} -> {fmt(after['params'])}")
    if after.get("metric") in ("accuracy", "agreement"):
        text += f", float {after['metric']} {_percent(before['value'])} -> {_percent(after['value'])}"
    return text


def _quantize_detail(report: dict) -> str:
    """What int8 cost: accuracy (or agreement with the float model) and size."""
    if report.get("float_accuracy") is not None:
        quality = f"accuracy float {_percent(report['float_accuracy'])} -> int8 {_percent(report['int8_accuracy'])}"
    else:
        quality = f"top-1 agreement {_percent(report.get('top1_agreement'))}, cosine {fmt(report.get('cosine_similarity'))}"
    return f"{quality}; {fmt(report.get('float_bytes'))} -> {fmt(report.get('int8_bytes'))} bytes"


def print_variants(stage: dict, console) -> None:
    """The variant table: size, the metric against float, host latency (this computer's), accelerators."""
    rows = []
    for row in stage["variants"]:
        metric = row["metric"]
        latency = row["host_latency_ms"]
        rows.append([("* " if row["variant"] == stage["chosen"] else "  ") + row["variant"], row["bytes"],
                     f"{100 * row['value']:.2f}%", f"{0.0 - row['drop_points'] + 0.0:+.2f}", f"{row['cosine']:.6f}",
                     f"{row['rmse']:.3g}", latency.get("1"), latency.get("2"), ", ".join(row["accelerators"])])
    console.print(table(f"LiteRT variants ({metric} on {stage['inputs']}; * = chosen)",
                        ["variant", "bytes", metric, "vs float (points)", "cosine", "RMSE", "host ms, 1 thread",
                         "host ms, 2 threads", "suits"], rows, right_align_from=1))
    console.print(f"host latency: LiteRT {_litert_version()} with XNNPACK on {stage['host']}", highlight=False)
    console.print(f"rule: {stage['rule']}", highlight=False)
    for line in stage.get("not_made") or []:
        console.print(f"not made: {line}", highlight=False)


def _litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "?"
