"""How commands talk to people and to CI.

Human output goes through rich (tables, progress bars) on stderr/stdout; with --json a command prints exactly one
JSON document on stdout and nothing else there, so `edgekit X --json | jq` always works.
"""

import json
import math
import sys
from contextlib import contextmanager

import click

from edgekit.errors import EdgekitError

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for CI) instead of tables.")


def _jsonable(value):
    """numpy scalars/arrays, paths and NaN made JSON-safe without importing numpy here."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(document) -> None:
    from edgekit.fileio import writing

    text = json.dumps(document, indent=2, default=_jsonable, allow_nan=False)
    with writing("the standard output"):  # a full disk or closed pipe behind stdout: one line, not a traceback
        click.echo(text)


def print_error(message: str, kind: str, as_json: bool = False) -> None:
    """The error contract: one line `error: ...` on stderr and, with --json, one JSON object on stdout.

    kind: "input", "usage", "io", "device", "interrupted" or "internal" (see edgekit.errors).
    """
    line = " ".join(str(message).split())
    prefix = "internal error" if kind == "internal" else "error"
    click.echo(f"{prefix}: {line}", err=True)
    if as_json:
        try:
            click.echo(json.dumps({"error": line, "kind": kind}))
        except OSError:
            _drop_stdout()


def _drop_stdout() -> None:
    """Point a stdout that cannot be written at /dev/null, so that the exit flush does not fail a second time."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def stdout_console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)  # no wrapping of tables into files and pipes


def stderr_console():
    from rich.console import Console

    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=160)


def info(message: str, quiet: bool = False) -> None:
    """A one-line note for people (stderr, so --json output stays clean)."""
    if not quiet:
        stderr_console().print(message, highlight=False, markup=False)  # "[[optimize]]", paths with [ ]: as is


def table(title: str, columns: list[str], rows: list[list], *, right_align_from: int = 1):
    """A rich table; columns from `right_align_from` on (numbers) are right-aligned."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if i >= right_align_from else "left")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


@contextmanager
def progress(quiet: bool = False):
    """A rich progress bar on stderr, or a silent stand-in with the same interface when quiet (--json)."""
    console = None if quiet else stderr_console()
    if console is None or not console.is_terminal:  # a bar drawn into a log file or pipe is only noise
        yield _SilentProgress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        yield bar


class _SilentProgress:
    def add_task(self, description, total=None, **_):
        return 0

    def update(self, task_id, **_):
        pass

    def advance(self, task_id, advance=1):
        pass


def require_file(path, what: str = "file"):
    """Fail with one line when an input path does not exist."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise EdgekitError(f"{what} not found: {p}")
    return p
