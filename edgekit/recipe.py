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

    [build]
    arena_margin = 0.1

Every key is checked when the file is read: a typo or a wrong type is one line naming the key and what was
expected, before any model is loaded.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError

BACKENDS = ("native", "tflm")
TOP_LEVEL_KEYS = ("model", "data", "board", "backend", "optimize", "quantize", "build")
# [quantize] and [build] keys -> (type, description of what is expected). Stages extend these as they grow.
QUANTIZE_KEYS = {"calibration_samples": (int, "an integer > 0"), "eval_samples": (int, "an integer > 0")}
BUILD_KEYS = {
    "arena_margin": (float, "a number >= 0 (fraction of extra arena)"),
    "output": (str, "a folder path"),
    "runner": (str, "a runner name"),
}


@dataclass
class Recipe:
    """A parsed recipe; paths are absolute (resolved against the recipe's folder)."""

    path: Path
    model: Path | None = None
    data: Path | None = None
    board: str | None = None
    backend: str = "tflm"
    optimize: list[dict] = field(default_factory=list)
    quantize: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "model": _str(self.model), "data": _str(self.data), "board": self.board,
                "backend": self.backend, "optimize": self.optimize, "quantize": self.quantize, "build": self.build}


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
    return parse_recipe(data, path)


def parse_recipe(data: dict, path) -> Recipe:
    """Check a recipe already read from TOML; relative paths are resolved against `path`'s folder."""
    from edgekit.optimize import validate_step

    path = Path(path).resolve()
    name = path.name
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise EdgekitError(f"{name}: unknown key {key!r}; expected one of {', '.join(TOP_LEVEL_KEYS)}")
    recipe = Recipe(path=path)
    for key in ("model", "data"):
        if key in data:
            value = data[key]
            if not isinstance(value, str) or not value:
                raise EdgekitError(f"{name}: {key!r} must be a file path (a string), got {value!r}")
            setattr(recipe, key, (path.parent / value).resolve())
    if "board" in data:
        recipe.board = _board(data["board"], name)
    if "backend" in data:
        if data["backend"] not in BACKENDS:
            raise EdgekitError(f"{name}: 'backend' must be one of {', '.join(BACKENDS)}, got {data['backend']!r}")
        recipe.backend = data["backend"]
    steps = data.get("optimize", [])
    if isinstance(steps, dict):  # a single [optimize] table
        steps = [steps]
    if not isinstance(steps, list):
        raise EdgekitError(f"{name}: 'optimize' must be a list of [[optimize]] tables, got {steps!r}")
    for i, step in enumerate(steps):
        where = f"{name}: [[optimize]] step {i + 1}"
        checked = validate_step(step, where)
        if checked.get("teacher"):
            checked["teacher"] = str((path.parent / checked["teacher"]).resolve())
        # keep only what the file said (defaults are filled at run time), with resolved paths
        recipe.optimize.append({k: checked[k] for k in step} | {"technique": checked["technique"]})
    recipe.quantize = _table(data, "quantize", QUANTIZE_KEYS, name)
    recipe.build = _table(data, "build", BUILD_KEYS, name)
    return recipe


def _board(value, name) -> str:
    from edgekit.boards import all_boards

    boards = all_boards()
    if not isinstance(value, str) or value not in boards:
        raise EdgekitError(f"{name}: 'board' must be one of {', '.join(sorted(boards))}, got {value!r}")
    return value


def _table(data: dict, key: str, schema: dict, name: str) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise EdgekitError(f"{name}: [{key}] must be a table, got {table!r}")
    result = {}
    for k, value in table.items():
        if k not in schema:
            raise EdgekitError(f"{name}: unknown key {k!r} in [{key}]; expected one of {', '.join(schema)}")
        kind, expected = schema[k]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and kind is int:
            ok = value > 0
        if ok and kind is float:
            ok = value >= 0
        if not ok:
            raise EdgekitError(f"{name}: [{key}] {k!r} must be {expected}, got {value!r}")
        result[k] = value
    return result
