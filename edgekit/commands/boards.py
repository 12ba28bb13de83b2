"""`edgekit boards`: the supported boards and their memory (no TensorFlow involved)."""

import click

from edgekit.console import json_option, print_json, stdout_console, table


@click.command("boards")
@json_option
def command(as_json):
    """List the supported boards with their core, clock, flash and RAM."""
    from edgekit.boards import all_boards

    boards = all_boards()
    if as_json:
        print_json({"boards": [b.to_dict() for b in boards.values()]})
        return
    rows = [
        [b.name, b.core, "emulated" if b.emulated or b.data.get("qemu_user") else ("host" if b.arch == "host" else "hardware"),
         round(b.clock_hz / 1e6) if b.clock_hz else None, b.flash_bytes // 1024, b.ram_bytes // 1024,
         b.psram_bytes // 1024 or None, b.default_runner]
        for b in boards.values()
    ]
    stdout_console().print(table("Boards", ["board", "core", "kind", "MHz", "flash KiB", "RAM KiB", "PSRAM KiB",
                                            "runner"], rows, right_align_from=3))
