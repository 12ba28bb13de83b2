"""The `edgekit` command.

Commands live one per module in edgekit/commands/ and are imported only when run (or when their help is asked
for), and those modules import TensorFlow only inside their functions: `edgekit --help` stays instant.
"""

import importlib
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
    "flash": ("flash", "Put a built project on its board (or start it in the emulator)."),
    "profile": ("profile", "Measure latency, memory and output agreement on the device."),
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
        return module.command

    def format_commands(self, ctx, formatter):
        # Short help from the table above, so that `edgekit --help` imports no command module.
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli():
    """edgekit: from a Keras model to numbers measured on a microcontroller.

    \b
    Typical use:
      edgekit build model.keras --data calib.npz --board mps2-an386 --flash --profile
    """


def main(argv=None):
    """Entry point: EdgekitError becomes one line on stderr and an exit code, never a traceback.

    SIGINT and SIGTERM interrupt the command the same way (cleanup runs) and exit 130 and 143."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        returned = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except _Stopped as stopped:
        _quiet_signals()
        click.echo("error: terminated (SIGTERM)" if stopped.terminated else "error: interrupted", err=True)
        sys.exit(143 if stopped.terminated else 130)
    except EdgekitError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt as interrupt:
        _quiet_signals()
        terminated = isinstance(interrupt, Terminated)
        click.echo("error: terminated (SIGTERM)" if terminated else "error: interrupted", err=True)
        sys.exit(143 if terminated else 130)
    # click returns the exit code of --help/--version in non-standalone mode; commands return None.
    sys.exit(returned if isinstance(returned, int) else 0)


def _quiet_signals() -> None:
    """Cleanup is done: a second Ctrl-C or SIGTERM while exiting must not print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    main()
