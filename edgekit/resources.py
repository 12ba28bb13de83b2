"""Where the templates and board files are.

In a wheel they are installed inside the package (edgekit/templates, edgekit/boards, see pyproject.toml); in a
source checkout they sit at the top of the repository, beside the package.
"""

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgekit's '{name}' folder is missing from the installation (looked in {_PACKAGE})")


def templates_dir() -> Path:
    return data_dir("templates")


def boards_dir() -> Path:
    return data_dir("boards")
