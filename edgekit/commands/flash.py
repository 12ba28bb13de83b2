"""`edgekit flash`: put a build on its board with the board's runner (or start it in the emulator)."""

import click

from edgekit.console import fmt, info, json_option, print_json, stdout_console


@click.command("flash")
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--port", help="Serial port of the board (e.g. /dev/ttyUSB0); esptool and arduino-cli need it.")
@click.option("--runner", help="Flash tool to use instead of the board's default (see the board file's runners).")
@click.option("--dry-run", is_flag=True, help="Print the exact commands instead of running them.")
@click.option("--benchmark-model", type=click.Path(dir_okay=False),
              help="adb/ssh runners: LiteRT's benchmark_model (a local binary to copy, or a path on the device).")
@json_option
def command(build_dir, port, runner, dry_run, benchmark_model, as_json):
    """Put the build in BUILD_DIR on its board.

    \b
    The board file names the default runner (qemu, host, esptool, pyocd, openocd, uf2, arduino-cli).
    Emulated and host boards are started, checked to answer, and stopped again.
    """
    from edgekit.flash import flash_build

    log = None if as_json else (lambda line: info(line))
    extra = {"benchmark_model": benchmark_model} if benchmark_model else None
    report = flash_build(build_dir, port=port, runner=runner, dry_run=dry_run, log=log, extra=extra)
    if as_json:
        print_json(report)
        return
    if dry_run:
        if not report["built"]:
            info(f"note: {build_dir} is not built yet; the commands name the image {report['image']} that "
                 "its build writes (see its README.md)")
        for line in report["commands"]:
            click.echo(line)
        return
    console = stdout_console()
    summary = f"{report['board']}: flashed with {report['runner']}"
    if report.get("booted"):
        summary = (f"{report['board']}: started with {report['runner']}, answered in {fmt(report['boot_ms'])} ms "
                   f"({report.get('backend')} backend, input {fmt(report.get('input_bytes'))} bytes)")
    if report.get("image_bytes"):
        summary += f"; image {fmt(report['image_bytes'])} of {fmt(report['flash_bytes'])} bytes of flash"
    console.print(summary, highlight=False)
    if report.get("benchmark"):
        from edgekit.commands.profile import print_benchmark

        print_benchmark(report["benchmark"])
