"""The `edgekit` command.

Commands live one per module in edgekit/commands/ and are imported only when run (or when their help is asked
for), and those modules import TensorFlow only inside their functions: `edgekit --help` stays instant.
"""

import importlib
import math
import signal
import sys

import click

from edgekit import __version__
from edgekit.errors import EdgekitError

# command name -> (module under edgekit.commands, one-line help shown by `edgekit --help`)
COMMANDS = {
    "boards": ("boards", "List the supported boards with their memory."),
    "quantize": ("quantize", "Quantize a model to a fully int8 TFLite flatbuffer and report what it cost."),
    "analyze": ("analyze", "MACs, parameters, RAM and flash of an int8 model, and whether it fits a board."),
    "optimize": ("optimize", "Prune, distill or factorize a Keras model and report what each step saved."),
    "build": ("build", "Run the whole pipeline and generate a C project for a board."),
    "tune": ("tune", "Search optimize/quantize settings for the best model that meets a board's budget."),
    "flash": ("flash", "Put a built project on its board (or start it in the emulator)."),
    "profile": ("profile", "Measure latency, memory and output agreement on the device."),
    "compare": ("compare", "Build and profile each backend on one board, side by side."),
    "report": ("report", "Write one self-contained HTML report of a build folder."),
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that the same cleanup runs (outputs, children)."""


class _Stopped(BaseException):
    """An interrupt on its way out of click, which would otherwise turn it into Abort after a blank line."""

    def __init__(self, terminated: bool):
        super().__init__()
        self.terminated = terminated


def _on_sigterm(signum, frame):
    raise Terminated()


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            raise _Stopped(isinstance(interrupt, Terminated)) from None

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"edgekit.commands.{COMMANDS[name][0]}")
        return checked_options(module.command)

    def format_commands(self, ctx, formatter):
        # Short help from the table above, so that `edgekit --help` imports no command module.
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


# Whole-number options: (smallest, largest) accepted. Every other int option gets 0..INT_MAX; a float option must
# be finite. These run before the command does anything, so a bad number never reaches a half-done stage.
INT_MAX = 2**31 - 1
INT_RANGES = {
    "runs": (1, 100_000),  # a profile of 100,000 inferences is hours on a slow board
    "calibration_samples": (1, INT_MAX),
    "eval_samples": (1, INT_MAX),
    "arena_bytes": (1, INT_MAX),
    "epochs": (0, 10_000),
    "max_epochs": (1, 10_000),
    "batch_size": (1, INT_MAX),
    "trials": (1, 100_000),
}


def _check_value(param: click.Parameter, value):
    """The shared checks of every option of every command: no empty text, numbers finite and in range."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, tuple):  # multiple=True / nargs
        return tuple(_check_value(param, v) for v in value)
    name = param.opts[-1] if param.opts and param.opts[-1].startswith("-") else (param.name or "").upper()
    if isinstance(value, str) and value == "":
        raise click.BadParameter("is empty; expected a value", param_hint=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", param_hint=name)
    if isinstance(value, int):
        low, high = INT_RANGES.get(param.name, (0, INT_MAX))
        if not low <= value <= high:
            raise click.BadParameter(f"{value} is out of range; expected a whole number from {low:,} to {high:,}",
                                     param_hint=name)
    return value


def checked_options(command: click.Command) -> click.Command:
    """Put `_check_value` in front of each option's own callback (once per command object)."""
    if getattr(command, "_edgekit_checked", False):
        return command
    for param in command.params:
        own = param.callback

        def callback(ctx, param, value, own=own):
            value = _check_value(param, value)
            return own(ctx, param, value) if own else value

        param.callback = callback
    command._edgekit_checked = True
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli():
    """edgekit: from a Keras model to numbers measured on a microcontroller.

    \b
    Typical use:
      edgekit build model.keras --data calib.npz --board mps2-an386 --flash --profile
    """


def main(argv=None):
    """Entry point, and the error contract: every failure is one line on stderr and an exit code, never a traceback.

    With --json the same error is also one JSON object on stdout, {"error": ..., "kind": ...}, so CI gets
    something it can parse. Exit codes: 1 bad input, file system error or internal error; 2 usage; 130
    interrupted (SIGINT), 143 terminated (SIGTERM): both interrupt the command the same way, so cleanup runs.
    An unexpected exception is reported as an internal error unless EDGEKIT_DEBUG=1 asks for the traceback.
    """
    from edgekit.console import print_error

    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)

    def fail(message: str, kind: str, code: int):
        print_error(message, kind, as_json)
        sys.exit(code)

    def stopped(terminated: bool):
        _quiet_signals()  # the process is exiting
        fail("terminated (SIGTERM)" if terminated else "interrupted", "interrupted", 143 if terminated else 130)

    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        returned = _run(args, fail, stopped)
    finally:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # called in-process (tests): leave it as it was
            signal.signal(signal.SIGTERM, previous_sigterm)
    # click returns the exit code of --help/--version in non-standalone mode; commands return None.
    sys.exit(returned if isinstance(returned, int) else 0)


def _run(args: list[str], fail, stopped):
    """The command, with every way it can fail turned into `fail(message, kind, exit code)`."""
    import os

    try:
        return cli.main(args=args, prog_name="edgekit", standalone_mode=False)
    except _Stopped as stop:
        stopped(stop.terminated)
    except EdgekitError as error:
        fail(str(error), error.kind, error.exit_code)
    except click.exceptions.Abort:
        stopped(False)  # click turns Ctrl-C into Abort
    except click.ClickException as error:
        kind = "usage" if isinstance(error, click.UsageError) or error.exit_code == 2 else "input"
        fail(error.format_message(), kind, error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt as interrupt:
        stopped(isinstance(interrupt, Terminated))
    except OSError as error:  # the last line of defence: the places that read or write say more
        import errno

        reason = os.strerror(error.errno) if error.errno else (str(error) or type(error).__name__)
        code = f" ({errno.errorcode.get(error.errno, error.errno)})" if error.errno else ""
        fail(f"{error.filename}: {reason}{code}" if error.filename else f"{reason}{code}", "io", 1)
    except Exception as error:
        if os.environ.get("EDGEKIT_DEBUG") == "1":
            raise
        detail = " ".join(str(error).split())[:300]
        fail(f"{type(error).__name__}{': ' + detail if detail else ''} (please report; EDGEKIT_DEBUG=1 shows the "
             "traceback)", "internal", 1)


def _wants_json(args: list[str]) -> bool:
    """--json among the options (before a `--` that ends them): the error is then reported as JSON too."""
    options = args[:args.index("--")] if "--" in args else args
    return "--json" in options


def _quiet_signals() -> None:
    """Cleanup is done: a second Ctrl-C or SIGTERM while exiting must not print a traceback.

    A no-op handler rather than SIG_IGN: an ignored signal stays ignored in every program started afterwards
    (exec keeps SIG_IGN), which would make them deaf to Ctrl-C when main() was called in-process."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)


def _ignore(signum, frame) -> None:
    pass


if __name__ == "__main__":
    main()
