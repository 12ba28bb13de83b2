"""The one exception type users see.

Every stage raises EdgekitError for bad input; the CLI prints its message as one line on stderr and exits with
its exit code (1 for bad input, 2 for usage errors), never with a traceback. `kind` says which class of problem
it is for machines (`--json` prints {"error": ..., "kind": ...}): "input" (the model, data or recipe), "usage"
(options), "io" (a file system error), "device" (the board or emulator), "interrupted", "internal".
"""


class EdgekitError(Exception):
    """A problem with the user's input or environment, phrased as: what was wrong, and what was expected."""

    exit_code = 1
    kind = "input"

    def __init__(self, message: str, exit_code: int | None = None, kind: str | None = None):
        super().__init__(" ".join(str(message).split()))  # always one line
        if exit_code is not None:
            self.exit_code = exit_code
        if kind is not None:
            self.kind = kind


class UsageError(EdgekitError):
    """Wrong combination of options or arguments."""

    exit_code = 2
    kind = "usage"
