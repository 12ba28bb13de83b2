"""`edgekit report DIR`: one self-contained HTML page of a build folder (edgekit.report)."""

import click

from edgekit.console import info, json_option, print_json


@click.command("report")
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write the page (default: DIR/report.html).")
@json_option
def command(build_dir, output, as_json):
    """Write one HTML page (no network needed to view it) for the build in BUILD_DIR.

    \b
    Fit verdict, memory plan over time, per-layer MACs and measured time under Keras layer names, accuracy and
    validation, optimize steps; the Pareto front (tune.json) and the backend comparison (compare.json) when
    they are there.
    """
    from edgekit.report import SECTIONS, write_report

    path = write_report(build_dir, output)
    text = path.read_text(encoding="utf-8")
    sections = [key for key in SECTIONS if f'<section id="{key}">' in text]
    if as_json:
        print_json({"report": str(path), "bytes": len(text.encode("utf-8")), "sections": sections})
        return
    info(f"wrote {path} ({len(text.encode('utf-8')):,} bytes; sections: {', '.join(sections)})")
