"""The project recipe, `edgekit.toml`: a project's whole pipeline in one file, read by `optimize` and `build`.

    model = "digits_cnn.keras"        # paths are relative to this file
    data = "digits.npz"
    board = "mps2-an386"
    backend = "native"                # or "tflm"

    [[optimize]]                      # steps, applied in order
    technique = "structured"
    ratio = 0.5
    epochs = 10

    [quantize]
    calibration_samples = 200
    # per_channel = false             # one weight scale per tensor instead of per output channel

    # [tune]                          # the search space and budget of `edgekit tune` (docs/tune.md)
    # max_ram = 8192

    [build]
    output = "build-digits"           # the default of -o
    runner = "qemu"                   # the manifest's runner (one of the board's)
    # arena_margin = 0.2              # tflm backend: arena margin fraction (default 0.1)

Flags given on the command line win over the recipe key by key (`edgekit build --board host` keeps the rest of
the recipe), and the command says in one line what they replaced.

Every key is checked when the file is read: a typo or a wrong type is one line naming the key and what was
expected, before any model is loaded.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError

BACKENDS = ("native", "tflm")
TOP_LEVEL_KEYS = ("model", "data", "board", "backend", "optimize", "quantize", "build", "tune")
# [quantize] and [build] keys -> (type, description of what is expected). Stages extend these as they grow.
QUANTIZE_KEYS = {"calibration_samples": (int, "an integer > 0"), "eval_samples": (int, "an integer > 0"),
                 "per_channel": (bool, "true or false (one weight scale per output channel, or per tensor)")}
BUILD_KEYS = {
    "arena_margin": (float, f"a number from 0 to 10 (fraction of extra TFLite Micro arena)"),
    "output": (str, "a folder path"),
    "runner": (str, "a runner name"),
}
MAX_ARENA_MARGIN = 10.0  # 1000 % extra arena: beyond that it is a typo, not a margin


@dataclass
class Recipe:
    """A parsed recipe; paths are absolute (resolved against the recipe's folder)."""

    path: Path
    model: Path | None = None
    data: Path | None = None
    board: str | None = None
    backend: str | None = None  # None: the board's default backend
    optimize: list[dict] = field(default_factory=list)
    quantize: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    tune: dict = field(default_factory=dict)  # the search space and budget of `edgekit tune` (see edgekit.tune)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "model": _str(self.model), "data": _str(self.data), "board": self.board,
                "backend": self.backend, "optimize": self.optimize, "quantize": self.quantize, "build": self.build,
                "tune": self.tune}


def _shown(value, limit: int = 80) -> str:
    """repr() for an error line, cut short: a recipe value can be a megabyte long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _str(path):
    return None if path is None else str(path)


def load_recipe(path) -> Recipe:
    """Read and check an edgekit.toml; EdgekitError naming the key and what was expected when it is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / "edgekit.toml"
    from edgekit.fileio import MAX_TEXT_BYTES, read_input_file

    text = read_input_file(path, "recipe", MAX_TEXT_BYTES)
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise EdgekitError(f"{path.name} is not valid TOML: {error}") from None
    except RecursionError:
        raise EdgekitError(f"{path.name} nests arrays or tables too deeply to read; a recipe needs at most "
                           "[[optimize]] tables of plain values") from None
    return parse_recipe(data, path)


def parse_recipe(data: dict, path) -> Recipe:
    """Check a recipe already read from TOML; relative paths are resolved against `path`'s folder."""
    from edgekit.optimize import validate_step

    path = Path(path).resolve()
    name = path.name
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise EdgekitError(f"{name}: unknown key {_shown(key)}; expected one of {', '.join(TOP_LEVEL_KEYS)}")
    recipe = Recipe(path=path)
    for key in ("model", "data"):
        if key in data:
            value = data[key]
            if not isinstance(value, str) or not value:
                raise EdgekitError(f"{name}: {_shown(key)} must be a file path (a string), got {_shown(value)}")
            setattr(recipe, key, (path.parent / value).resolve())
    if "board" in data:
        recipe.board = _board(data["board"], name)
    if "backend" in data:
        if data["backend"] not in BACKENDS:
            raise EdgekitError(f"{name}: 'backend' must be one of {', '.join(BACKENDS)}, got {_shown(data['backend'])}")
        recipe.backend = data["backend"]
    steps = data.get("optimize", [])
    if isinstance(steps, dict):  # a single [optimize] table
        steps = [steps]
    if not isinstance(steps, list):
        raise EdgekitError(f"{name}: 'optimize' must be a list of [[optimize]] tables, got {_shown(steps)}")
    for i, step in enumerate(steps):
        where = f"{name}: [[optimize]] step {i + 1}"
        checked = validate_step(step, where)
        if checked.get("teacher"):
            checked["teacher"] = str((path.parent / checked["teacher"]).resolve())
        # keep only what the file said (defaults are filled at run time), with resolved paths
        recipe.optimize.append({k: checked[k] for k in step} | {"technique": checked["technique"]})
    recipe.quantize = _table(data, "quantize", QUANTIZE_KEYS, name)
    recipe.build = _table(data, "build", BUILD_KEYS, name)
    if "tune" in data:
        from edgekit.tune import parse_tune_table

        recipe.tune = parse_tune_table(data["tune"], name)
    if "output" in recipe.build:
        if not recipe.build["output"]:
            raise EdgekitError(f"{name}: [build] 'output' must be a folder path, got ''")
        recipe.build["output"] = str((path.parent / recipe.build["output"]).resolve())
    return recipe


def _board(value, name) -> str:
    from edgekit.boards import all_boards

    boards = all_boards()
    if not isinstance(value, str) or value not in boards:
        raise EdgekitError(f"{name}: 'board' must be one of {', '.join(sorted(boards))}, got {_shown(value)}")
    return value


def _table(data: dict, key: str, schema: dict, name: str) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise EdgekitError(f"{name}: [{key}] must be a table, got {_shown(table)}")
    result = {}
    for k, value in table.items():
        if k not in schema:
            raise EdgekitError(f"{name}: unknown key {_shown(k)} in [{key}]; expected one of {', '.join(schema)}")
        kind, expected = schema[k]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if ok and kind is int:
            ok = value > 0
        if ok and kind is float:  # NaN fails every comparison; inf is no margin
            ok = math.isfinite(value) and 0 <= value <= MAX_ARENA_MARGIN
        if not ok:
            raise EdgekitError(f"{name}: [{key}] {_shown(k)} must be {expected}, got {_shown(value)}")
        result[k] = value
    return result
