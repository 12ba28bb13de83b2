"""`edgekit tune`: search the optimize/quantize/backend settings for the best model that fits a device budget.

Each trial of an Optuna multi-objective study (int8 accuracy up; RAM, flash and latency down) picks settings
from the search space, then:

1. makes the structural edit only (structured pruning, low-rank factorization: no training), quantizes it and
   measures RAM, flash and, on an emulated board, instructions in QEMU. Those depend on the shapes, not on the
   weights, so a trial that cannot meet the budget is rejected here, before any training (Optuna's pruners do
   not work in multi-objective studies);
2. otherwise runs the whole recipe (edgekit.optimize.run_recipe: the edit again, fine-tuning or distillation,
   magnitude pruning), quantizes the result and measures it the same way, with the int8 metric on held-out data.

Every measurement is cached by the sha256 of the int8 model (DIR/cache), so trials that end in the same model
cost nothing twice. Each trial's figures go to Optuna's constraints (budget left, <= 0 is met), which the
sampler uses to steer towards feasible settings. The study lives in an Optuna storage: a SQLite file in the
output folder by default (stop and run the same command again to resume), or any RDB URL (`--storage
postgresql://...`): the same command on several machines then runs as workers of one shared study.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import EdgekitError, UsageError

OBJECTIVES = ("accuracy", "ram_bytes", "flash_bytes", "latency")
DIRECTIONS = ("maximize", "minimize", "minimize", "minimize")
STUDY_DB = "study.db"
RESULT = "tune.json"
FRONT_PNG = "front.png"
BEST_KERAS = "best.keras"
BEST_TFLITE = "best.tflite"
RECIPE = "edgekit.toml"
HEARTBEAT_SECONDS = 30  # a worker that stops beating for GRACE_SECONDS has its trial failed (and retried once)
GRACE_SECONDS = 120
CALIBRATION_SAMPLES = 200  # the quantize default, written into the recipe so `build --recipe` quantizes the same

# The search space: name -> (kind, default). Ranges are [low, high]; a single value fixes the setting; "off"/false
# leaves the technique out. Kinds: fraction (structured ratio, sparsity), energy, epochs, lr, choice lists.
SPACE_KEYS = {
    "structured": ("fraction", (0.0, 0.75)),
    "rank_energy": ("energy", None),
    "prune": ("fraction", None),
    "distill": ("bools", (False, True)),
    "epochs": ("epochs", (1, 8)),
    "lr": ("lr", (3e-4, 1e-2)),
    "quantization": ("quantization", ("per-channel", "per-tensor")),
    "backend": ("backends", None),  # None: native, plus tflm when a TFLite Micro tree is given
}
BUDGET_KEYS = ("max_ram", "max_flash", "max_latency_ms", "max_instructions", "max_accuracy_drop")
TABLE_KEYS = tuple(SPACE_KEYS) + BUDGET_KEYS + ("trials", "timeout", "storage", "seed")
QUANTIZATION = ("per-channel", "per-tensor")


# ---------------------------------------------------------------------------------------------------------------
# Search space and budget


def parse_range(value, key: str, where: str = "--"):
    """A range from a flag ("0:0.75", "0.5", "off") or a TOML value ([0, 0.75], 0.5, false): (low, high) or None."""
    kind = SPACE_KEYS[key][0]
    name = f"{where}{key.replace('_', '-')}" if where == "--" else f"{where} '{key}'"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "no", "none", "false"):
            return None
        parts = text.split(":")
        if len(parts) > 2:
            raise UsageError(f"{name} {value!r}: expected LOW:HIGH, one value, or off")
        try:
            numbers = [int(p) if kind == "epochs" else float(p) for p in parts]
        except ValueError:
            raise UsageError(f"{name} {value!r}: expected LOW:HIGH, one value, or off "
                             f"({_EXPECTED[kind]})") from None
    elif value is False or value is None:
        return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        numbers = [value]
    elif isinstance(value, list) and len(value) in (1, 2) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        numbers = list(value)
    else:
        raise EdgekitError(f"{name} must be [low, high], one number or false, got {value!r}")
    low, high = numbers[0], numbers[-1]
    if kind == "epochs" and not all(isinstance(n, int) for n in (low, high)):
        raise EdgekitError(f"{name} must be whole numbers of epochs, got {value!r}")
    if not all(math.isfinite(n) and _in_range(kind, n) for n in (low, high)) or low > high:
        raise UsageError(f"{name} {value!r}: expected {_EXPECTED[kind]}, low <= high")
    return (low, high)


_EXPECTED = {"fraction": "numbers in [0, 1)", "energy": "numbers in (0, 1]", "epochs": "whole numbers from 0 to 1000",
             "lr": "numbers in (0, 1]"}


def _in_range(kind, n) -> bool:
    return {"fraction": 0 <= n < 1, "energy": 0 < n <= 1, "epochs": 0 <= n <= 1000, "lr": 0 < n <= 1}[kind]


def parse_choices(value, key: str, where: str = "--") -> tuple:
    """A list of choices from a flag ("per-channel,per-tensor") or TOML (["native"], true)."""
    kind = SPACE_KEYS[key][0]
    name = f"{where}{key.replace('_', '-')}" if where == "--" else f"{where} '{key}'"
    allowed = {"bools": (False, True), "quantization": QUANTIZATION, "backends": ("native", "tflm")}[kind]
    if kind == "bools":
        words = {"on": (True,), "true": (True,), "yes": (True,), "off": (False,), "false": (False,), "no": (False,),
                 "both": (False, True), "search": (False, True)}
        if isinstance(value, bool):
            return (value,)
        if isinstance(value, list) and value and all(isinstance(v, bool) for v in value):
            return tuple(sorted(set(value)))
        if isinstance(value, str) and value.strip().lower() in words:
            return words[value.strip().lower()]
        raise UsageError(f"{name} {value!r}: expected on, off or both")
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) for v in items):
        raise EdgekitError(f"{name} must be a list of {', '.join(allowed)}, got {value!r}")
    items = [v.strip() for v in items]
    for v in items:
        if v not in allowed:
            raise UsageError(f"{name}: {v!r} is not one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(items))


def parse_tune_table(table, name: str) -> dict:
    """The [tune] table of an edgekit.toml, checked key by key (the values as `tune` takes them)."""
    if not isinstance(table, dict):
        raise EdgekitError(f"{name}: [tune] must be a table, got {table!r}")
    result = {}
    where = f"{name}: [tune]"
    for key, value in table.items():
        if key not in TABLE_KEYS:
            raise EdgekitError(f"{where}: unknown key {key!r}; expected one of {', '.join(TABLE_KEYS)}")
        if key in SPACE_KEYS:
            kind = SPACE_KEYS[key][0]
            result[key] = parse_choices(value, key, where) if kind in ("bools", "quantization", "backends") \
                else parse_range(value, key, where)
        elif key == "storage":
            if not isinstance(value, str) or not value:
                raise EdgekitError(f"{where} 'storage' must be a database URL (a string), got {value!r}")
            result[key] = value
        else:
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            whole = key in ("trials", "max_ram", "max_flash", "max_instructions", "seed")
            if not number or (whole and not isinstance(value, int)) or value < 0 or (key == "trials" and value < 1):
                raise EdgekitError(f"{where} {key!r} must be {'a whole number' if whole else 'a number'} "
                                   f"{'>= 1' if key == 'trials' else '>= 0'}, got {value!r}")
            result[key] = value
    return result


@dataclass
class Space:
    structured: tuple | None = SPACE_KEYS["structured"][1]
    rank_energy: tuple | None = None
    prune: tuple | None = None
    distill: tuple = (False, True)
    epochs: tuple = (1, 8)
    lr: tuple = (3e-4, 1e-2)
    quantization: tuple = QUANTIZATION
    backend: tuple = ("native",)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def suggest(self, trial) -> dict:
        """The settings of one trial; a fixed range or a single choice is recorded without being sampled."""
        params = {}

        def number(name, bounds, log=False, integer=False):
            if bounds is None:
                return None
            low, high = bounds
            if low == high:
                return low
            if integer:
                return trial.suggest_int(name, int(low), int(high))
            return trial.suggest_float(name, low, high, log=log)

        def choice(name, options):
            return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))

        params["structured"] = number("structured", self.structured)
        params["rank_energy"] = number("rank_energy", self.rank_energy)
        params["prune"] = number("prune", self.prune)
        params["distill"] = choice("distill", self.distill)
        params["epochs"] = number("epochs", self.epochs, integer=True)
        params["lr"] = number("lr", self.lr, log=True)
        params["quantization"] = choice("quantization", self.quantization)
        params["backend"] = choice("backend", self.backend)
        if params["structured"] is not None:
            params["structured"] = round(params["structured"], 3)
        for key in ("rank_energy", "prune"):
            if params[key] is not None:
                params[key] = round(params[key], 3)
        if params["lr"] is not None:
            params["lr"] = float(f"{params['lr']:.3g}")
        return params


@dataclass
class Budget:
    max_ram: int | None = None
    max_flash: int | None = None
    max_latency_ms: float | None = None
    max_instructions: int | None = None
    max_accuracy_drop: float | None = None  # points (percent) below the unpruned model's int8 metric

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def constraints(self, figures: dict, baseline_accuracy: float | None) -> dict:
        """Optuna constraints, one per budget given (<= 0 is met): the excess as a fraction of the limit (points
        under the floor for accuracy)."""
        values = {}
        for key, limit in self._limits(baseline_accuracy):
            value = figures.get(key)
            if value is None:
                values[key] = 1.0  # not measured: not met
            elif key == "accuracy":
                values[key] = (limit - value) * 100
            else:
                values[key] = (value - limit) / limit
        return values

    def violations(self, figures: dict, baseline_accuracy: float | None, *, before_training: bool = False) -> list[str]:
        """What stands in the way of this budget, in words (empty: met)."""
        words = []
        for key, limit in self._limits(baseline_accuracy):
            if before_training and key == "accuracy":
                continue
            value = figures.get(key)
            if value is None:
                words.append(f"{_LABELS[key]} not measured")
            elif key == "accuracy" and value < limit:
                words.append(f"accuracy {100 * value:.2f}% is {100 * (limit - value):.2f} points under the "
                             f"{100 * limit:.2f}% floor")
            elif key != "accuracy" and value > limit:
                words.append(f"{_LABELS[key]} {_number(value)} > {_number(limit)} "
                             f"({100 * (value - limit) / limit:.0f}% over)" if limit else
                             f"{_LABELS[key]} {_number(value)} > 0")
        return words

    def shape_limits(self) -> bool:
        return any(v is not None for v in (self.max_ram, self.max_flash, self.max_instructions, self.max_latency_ms))

    def _limits(self, baseline_accuracy):
        limits = []
        if self.max_ram is not None:
            limits.append(("ram_bytes", self.max_ram))
        if self.max_flash is not None:
            limits.append(("flash_bytes", self.max_flash))
        if self.max_instructions is not None:
            limits.append(("instructions", self.max_instructions))
        if self.max_latency_ms is not None:
            limits.append(("latency_ms", self.max_latency_ms))
        if self.max_accuracy_drop is not None and baseline_accuracy is not None:
            limits.append(("accuracy", baseline_accuracy - self.max_accuracy_drop / 100))
        return limits


_LABELS = {"ram_bytes": "RAM bytes", "flash_bytes": "flash bytes", "instructions": "instructions",
           "latency_ms": "latency ms"}


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.3g}"


# ---------------------------------------------------------------------------------------------------------------
# Storage


def redact(url: str) -> str:
    """The storage URL without its password (it goes into tune.json and error lines)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# URL scheme -> the driver module SQLAlchemy (2.1) loads for it; postgresql:// means psycopg 3 there.
_DRIVERS = {"postgresql": "psycopg", "postgresql+psycopg": "psycopg", "postgresql+psycopg2": "psycopg2",
            "mysql": "MySQLdb", "mysql+pymysql": "pymysql", "mysql+mysqldb": "MySQLdb"}


def check_storage(url: str) -> None:
    """Optuna and the URL's database driver are importable; else one line naming what to install."""
    import importlib
    import importlib.util

    try:
        importlib.import_module("optuna")
    except ImportError:
        raise EdgekitError("edgekit tune needs optuna; install it with `pip install optuna` (an edgekit "
                           "dependency)") from None
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme or not (scheme.startswith(("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql"))):
        raise UsageError(f"--storage {redact(url)!r}: expected a database URL such as postgresql://user@host/db "
                         "or sqlite:///path/study.db")
    driver = _DRIVERS.get(scheme)
    if driver and not _importable(driver):
        if scheme == "postgresql":
            raise EdgekitError(f"--storage postgresql:// needs the PostgreSQL driver {driver}, which is not "
                               "installed; install it with `pip install 'edgekit[distributed]'`")
        raise EdgekitError(f"--storage {scheme}:// needs the database driver {driver}, which is not installed; "
                           f"install the {driver} package")


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def open_study(url: str, name: str, settings: dict, sampler):
    """Create or load the study; refuse one that was started with other settings (its trials would not compare)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is said once, by run_tune
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    for attempt in range(3):  # workers starting together race to create the tables and the study: retry
        try:
            storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                                 engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
            study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS),
                                        sampler=sampler, load_if_exists=True)
            break
        except Exception as error:  # sqlalchemy's OperationalError and friends: one line, without the password
            if isinstance(error, EdgekitError):
                raise
            racing = type(error).__module__.startswith("sqlalchemy") and type(error).__name__ != "OperationalError"
            if attempt < 2 and racing:
                time.sleep(1 + attempt)
                continue
            detail = " ".join(str(error).split("\n")[0].split())[:300]
            raise EdgekitError(f"cannot open the study at {redact(url)}: {type(error).__name__}: {detail}",
                               kind="io") from None
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", settings)
    elif recorded != json.loads(json.dumps(settings)):
        changed = sorted(k for k in set(recorded) | set(settings)
                         if recorded.get(k) != json.loads(json.dumps(settings.get(k))))
        raise UsageError(f"the study '{name}' at {redact(url)} was started with other settings ({', '.join(changed)} "
                         "differ); run it with the same model, data, board, search space and budget, or use "
                         "another -o/--storage")
    return study


# ---------------------------------------------------------------------------------------------------------------
# Measuring one int8 model (cached by its sha256)


@dataclass
class Measurer:
    """RAM, flash and latency of int8 models on one board, built and (on emulated boards) run in QEMU."""

    board: object
    cache_dir: Path
    tflm_dir: str | None = None
    measure_firmware: bool = True  # False: analysis figures only (cheap; tests)
    hits: int = 0
    misses: int = 0
    quantize_hits: int = 0  # counted by Tuner.quantized
    quantize_misses: int = 0
    _memory: dict = field(default_factory=dict)

    def measure(self, tflite_bytes: bytes, backend: str) -> dict:
        key = f"{hashlib.sha256(tflite_bytes).hexdigest()[:20]}-{backend}"
        if key in self._memory:
            self.hits += 1
            return dict(self._memory[key], cached=True)
        path = self.cache_dir / key / "measure.json"
        if path.is_file():
            try:
                figures = json.loads(path.read_text())
                self._memory[key] = figures
                self.hits += 1
                return dict(figures, cached=True)
            except (OSError, ValueError):
                pass  # a damaged cache entry is measured again
        self.misses += 1
        figures = self._measure(tflite_bytes, backend, self.cache_dir / key)
        from edgekit.fileio import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(figures, indent=1).encode())
        self._memory[key] = figures
        return dict(figures, cached=False)

    def _measure(self, tflite_bytes: bytes, backend: str, folder: Path) -> dict:
        from edgekit.analyze import analyze
        from edgekit.tflite_model import parse_tflite

        graph = parse_tflite(tflite_bytes, name="model")
        report = analyze(graph, self.board, backend)
        figures = {"backend": backend, "macs": report["macs"], "params": report["params"],
                   "analysis_ram_bytes": report["ram_bytes"], "analysis_flash_bytes": report["flash_bytes"],
                   "ram_bytes": report["ram_bytes"], "flash_bytes": report["flash_bytes"],
                   "ram_source": "analysis", "instructions": None, "firmware": None, "build_note": None}
        figures.update(latency_estimate(self.board, report["macs"]))
        if not self.measure_firmware:
            return figures
        built = self._build(tflite_bytes, backend, folder, figures)
        if built is None or not self.board.emulated:
            return figures
        from edgekit.profile import profile_build

        try:
            profile = profile_build(folder / "build", runs=1)
        except EdgekitError as error:
            figures["build_note"] = f"not run in QEMU: {error}"
            return figures
        instructions = int(profile["instructions"]["median"]) if profile.get("instructions") else None
        if instructions is not None:
            figures.update(instructions=instructions, latency_ms=instructions / self.board.clock_hz * 1e3,
                           latency_kind=f"QEMU instructions on {self.board.core} at 1 per cycle of the "
                                        f"{self.board.clock_hz / 1e6:g} MHz clock (emulated, measured)",
                           bit_exact=profile.get("max_abs_diff") == 0)
        stack = profile.get("stack_bytes")
        sizes = figures["firmware"] or {}
        if sizes.get("ram_static_bytes") is not None and stack is not None:
            figures.update(ram_bytes=int(sizes["ram_static_bytes"]) + int(stack),
                           ram_source="firmware: static RAM (data + bss) + stack measured in QEMU")
        return figures

    def _build(self, tflite_bytes, backend, folder, figures):
        from edgekit.build import build

        folder.mkdir(parents=True, exist_ok=True)
        model = folder / "model.tflite"
        model.write_bytes(tflite_bytes)
        try:
            result = build(str(model), self.board.name, str(folder / "build"), backend=backend, quiet=True,
                           tflm_dir=self.tflm_dir if backend == "tflm" else None)
        except EdgekitError as error:
            figures["build_note"] = f"not built: {error}"
            return None
        sizes = result["manifest"].get("sizes")
        if not sizes:
            compile_stage = next((s for s in result["stages"] if s["stage"] == "compile"), {})
            figures["build_note"] = f"not compiled: {compile_stage.get('skipped', 'no firmware')}"
            return None
        figures["firmware"] = sizes
        figures.update(flash_bytes=int(sizes["flash_bytes"]), ram_source="firmware")
        return result


def latency_estimate(board, macs: int) -> dict:
    """Latency from the MACs, labelled as an estimate: the board's cycles per MAC (boards/*.toml
    `cycles_per_mac`, from the kernels benchmark) or edgekit's pessimistic default, at the board's clock."""
    from edgekit.profile import CYCLES_PER_MAC

    cycles = float(board.data.get("cycles_per_mac", CYCLES_PER_MAC))
    clock = board.clock_hz or 1e9
    source = "the board's cycles_per_mac" if "cycles_per_mac" in board.data else "edgekit's default"
    return {"latency_ms": macs * cycles / clock * 1e3,
            "latency_kind": f"estimate: {macs:,} MACs x {cycles:g} cycles ({source}) at {clock / 1e6:g} MHz"}


# ---------------------------------------------------------------------------------------------------------------
# One trial


def steps_for(params: dict, seed: int = 0) -> list[dict]:
    """The optimize recipe of a trial's settings (the same that the written edgekit.toml carries)."""
    from edgekit.optimize import steps_from_flags

    epochs = params["epochs"] or 0
    training = {"epochs": epochs, "lr": params["lr"], "max_epochs": max(1, epochs), "seed": seed}
    steps = steps_from_flags(structured=params["structured"] or None, rank_energy=params["rank_energy"],
                             prune=params["prune"] or None, distill=params["distill"] and epochs > 0,
                             training=training)
    if params["prune"]:
        steps[-1]["schedule"] = "polynomial" if epochs else "constant"
    return steps


def structural_edit(model, params: dict):
    """The model after the shape-changing steps only (what RAM, flash and instructions depend on)."""
    edited = model
    if params["structured"]:
        from edgekit.optimize.structured import structured_prune

        edited, _ = structured_prune(edited, params["structured"])
    if params["rank_energy"] is not None:
        from edgekit.optimize.lowrank import low_rank

        edited, _ = low_rank(edited, params["rank_energy"])
    return edited


@dataclass
class Tuner:
    model_path: Path
    data_path: Path
    board: object
    space: Space
    budget: Budget
    out: Path
    measurer: Measurer
    seed: int = 0
    quiet: bool = True
    model: object = None
    dataset: object = None
    reference_outputs: object = None
    baseline: dict | None = None
    latency_unit: str = "ms"  # "instructions" when every model runs in QEMU
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def load(self):
        from edgekit.optimize import load_data, load_keras_model
        from edgekit.optimize.metrics import predict

        self.model = load_keras_model(self.model_path)
        self.dataset = load_data(self.data_path, self.model)
        if getattr(self.dataset, "x_test", None) is None or not len(self.dataset.x_test):
            raise EdgekitError(f"{self.data_path}: tune scores every trial on held-out data; the file needs x_test "
                               "(and y_test for accuracy) besides x_train")
        if getattr(self.dataset, "x_train", None) is None or not len(self.dataset.x_train):
            raise EdgekitError(f"{self.data_path}: tune needs x_train to calibrate and fine-tune")
        self.reference_outputs = predict(self.model, self.dataset.x_test)

    def quantized(self, model, per_channel: bool) -> bytes:
        """The int8 flatbuffer of a Keras model, cached by the model's architecture and weights (the same
        structural edit, or a trial that trains nothing, is not quantized twice)."""
        from edgekit.quantize import quantize

        key = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
        for array in model.get_weights():
            key.update(str(array.shape).encode())
            key.update(array.tobytes())
        key.update(b"per-channel" if per_channel else b"per-tensor")
        path = self.out / "cache" / "quantized" / f"{key.hexdigest()[:24]}.tflite"
        if path.is_file():
            self.measurer.quantize_hits += 1
            return path.read_bytes()
        tflite = quantize(model, self.dataset, calibration_samples=CALIBRATION_SAMPLES, eval_samples=None,
                          per_layer=False, quiet=True, per_channel=per_channel).tflite_bytes
        from edgekit.fileio import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, tflite)
        self.measurer.quantize_misses += 1
        return tflite

    def metric(self, tflite_bytes: bytes) -> float:
        """int8 accuracy on the held-out data, or top-1 agreement with the original model without labels."""
        from edgekit.quantize import accuracy, compare_outputs, run_tflite

        outputs = run_tflite(tflite_bytes, self.dataset.x_test)
        if self.dataset.y_test is not None:
            value = accuracy(outputs, self.dataset.y_test)
            if value is not None:
                return value
        return compare_outputs(self.reference_outputs, outputs)["top1_agreement"]

    def metric_name(self) -> str:
        return "int8 accuracy on x_test" if self.dataset.y_test is not None else \
            "int8 top-1 agreement with the float model on x_test"

    def measure_baseline(self, backend: str) -> dict:
        tflite = self.quantized(self.model, True)
        return {"accuracy": self.metric(tflite), **self.measurer.measure(tflite, backend)}

    def run_trial(self, trial) -> tuple:
        """Optuna's objective: (accuracy, RAM, flash, latency); the details go into the trial's user attrs."""
        started = time.monotonic()
        params = self.space.suggest(trial)
        steps = steps_for(params, self.seed)
        trial.set_user_attr("params", params)
        trial.set_user_attr("steps", steps)
        trial.set_user_attr("worker", self.worker)
        per_channel = params["quantization"] == "per-channel"
        baseline_accuracy = self.baseline["accuracy"] if self.baseline else None
        try:
            blocked = None
            if self.budget.shape_limits():  # RAM, flash and time depend on the shapes: known before training
                edit = structural_edit(self.model, params)
                tflite = self.quantized(edit, per_channel)
                figures = self.measurer.measure(tflite, params["backend"])
                blocked = self.budget.violations(figures, baseline_accuracy, before_training=True)
            if blocked:
                figures["accuracy"] = self.metric(tflite)  # of the untrained edit: what the sampler learns from
                trial.set_user_attr("rejected_before_training", "; ".join(blocked))
            else:
                from edgekit.optimize import run_recipe

                trained, _ = run_recipe(self.model, self.dataset, steps, quiet=True, int8=False)
                tflite = self.quantized(trained, per_channel)
                figures = self.measurer.measure(tflite, params["backend"])
                figures["accuracy"] = self.metric(tflite)
                self._keep(trial.number, trained, tflite)
        except EdgekitError as error:
            trial.set_user_attr("error", str(error))
            raise
        except Exception as error:  # one odd model (a converter crash, ...) fails its trial, not the whole tune
            detail = " ".join(str(error).split())[:300]
            trial.set_user_attr("error", f"{type(error).__name__}: {detail}")
            raise EdgekitError(f"trial {trial.number}: {type(error).__name__}: {detail}") from None
        figures["zlib_bytes"] = len(__import__("zlib").compress(tflite, 9))
        figures["tflite_sha256"] = hashlib.sha256(tflite).hexdigest()
        figures["seconds"] = round(time.monotonic() - started, 2)
        trial.set_user_attr("figures", figures)
        for key, value in self.budget.constraints(figures, baseline_accuracy).items():
            trial.set_constraint(key, value)  # the sampler steers towards settings that meet the budget
        trial.set_user_attr("violations", self.budget.violations(figures, baseline_accuracy))
        return objective_values(figures, self.latency_unit)

    def _keep(self, number: int, model, tflite: bytes) -> None:
        """This worker's trained model of a trial (so the best can be exported without training it again)."""
        folder = self.out / "trials"
        folder.mkdir(parents=True, exist_ok=True)
        from edgekit.fileio import atomic_write_bytes

        model.save(folder / f"{number}.keras")
        atomic_write_bytes(folder / f"{number}.tflite", tflite)


def objective_values(figures: dict, unit: str) -> tuple:
    latency = figures["instructions"] if unit == "instructions" else figures["latency_ms"]
    if latency is None:
        raise EdgekitError(f"no instruction count for this trial ({figures.get('build_note') or 'not run in QEMU'})")
    return (float(figures["accuracy"]), float(figures["ram_bytes"]), float(figures["flash_bytes"]), float(latency))


# ---------------------------------------------------------------------------------------------------------------
# The report


def trial_rows(study) -> list[dict]:
    """Every trial of the study (all workers), as tune.json lists them."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        figures = attrs.get("figures")
        rows.append({
            "number": t.number, "state": t.state.name, "worker": attrs.get("worker"),
            "params": attrs.get("params"), "steps": attrs.get("steps"),
            "values": dict(zip(OBJECTIVES, t.values)) if t.values else None,
            "figures": figures, "feasible": bool(figures) and not attrs.get("violations"),
            "violations": attrs.get("violations"), "rejected_before_training": attrs.get("rejected_before_training"),
            "error": attrs.get("error"),
            "started": t.datetime_start.isoformat() if t.datetime_start else None,
            "seconds": figures.get("seconds") if figures else None,
        })
    return rows


def pareto_front(rows: list[dict]) -> list[int]:
    """Numbers of the completed trials no other completed trial dominates (all four objectives)."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["values"]]

    def key(r):  # all minimized
        v = r["values"]
        return (-v["accuracy"], v["ram_bytes"], v["flash_bytes"], v["latency"])

    front = []
    for r in done:
        a = key(r)
        if not any(all(x <= y for x, y in zip(key(o), a)) and key(o) != a for o in done):
            front.append(r["number"])
    return sorted(front)


def front_rows(rows: list[dict], unit: str) -> list[dict]:
    """The Pareto front as flat rows (what the table, the picture and `edgekit report` show)."""
    by_number = {r["number"]: r for r in rows}
    front = []
    for number in pareto_front(rows):
        r = by_number[number]
        v = r["values"]
        front.append({"trial": number, "accuracy": v["accuracy"],
                      ("instructions" if unit == "instructions" else "latency_ms"): v["latency"],
                      "ram_bytes": int(v["ram_bytes"]), "flash_bytes": int(v["flash_bytes"]),
                      "meets_budget": r["feasible"], "rejected_before_training": bool(r["rejected_before_training"]),
                      "settings": describe(r["params"])})
    return front


def describe(params: dict | None) -> str:
    """A trial's settings in a few words."""
    if not params:
        return "-"
    parts = []
    if params.get("structured"):
        parts.append(f"structured {params['structured']:.2f}")
    if params.get("rank_energy") is not None:
        parts.append(f"low-rank {params['rank_energy']:.2f}")
    if params.get("prune"):
        parts.append(f"sparsity {params['prune']:.2f}")
    if params.get("distill") and params.get("epochs"):
        parts.append("distill")
    parts.append(f"{params.get('epochs')} ep, lr {params.get('lr'):g}")
    parts.append(params.get("quantization", ""))
    if params.get("backend") != "native":
        parts.append(params.get("backend", ""))
    return ", ".join(p for p in parts if p)


def best_row(rows: list[dict]) -> dict | None:
    """The feasible trial with the best metric (then the least latency, RAM and flash)."""
    feasible = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and not r["rejected_before_training"]]
    if not feasible:
        return None
    return min(feasible, key=lambda r: (-r["values"]["accuracy"], r["values"]["latency"], r["values"]["ram_bytes"],
                                        r["values"]["flash_bytes"], r["number"]))


def closest_rows(rows: list[dict], budget: Budget, baseline_accuracy, count: int = 3) -> list[dict]:
    """When nothing meets the budget: the trials that came nearest (least total excess over the limits, each as
    a fraction of its limit), with what stood in the way."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r["figures"]]

    def excess(r):
        return sum(max(0.0, c) for c in budget.constraints(r["figures"], baseline_accuracy).values())

    return [{"number": r["number"], "excess": round(excess(r), 4), "violations": r["violations"],
             "params": r["params"], "values": r["values"]}
            for r in sorted(done, key=lambda r: (excess(r), r["number"]))[:count]]


def write_recipe(path: Path, row: dict, model_path: Path, data_path: Path, board: str, study_name: str) -> None:
    """An edgekit.toml that rebuilds the trial's model with `edgekit build --recipe`."""
    from edgekit.fileio import atomic_write_bytes

    def rel(p: Path) -> str:  # relative to the recipe (as recipes are) when it is near, else absolute
        relative = os.path.relpath(Path(p).resolve(), path.parent.resolve())
        return relative if relative.count("..") <= 2 else str(Path(p).resolve())

    params = row["params"]
    lines = [f"# written by edgekit tune: trial {row['number']} of study '{study_name}', the best that meets the "
             "budget", f"#   edgekit build --recipe {path}", "",
             f"model = {json.dumps(rel(model_path))}", f"data = {json.dumps(rel(data_path))}",
             f"board = {json.dumps(board)}", f"backend = {json.dumps(params['backend'])}", ""]
    if params["backend"] == "tflm":
        lines.insert(2, "#   (the tflm backend: with --tflm-dir DIR or TFLM_DIR set, as the tune had)")
    for step in row["steps"]:
        lines.append("[[optimize]]")
        for k, v in step.items():
            if v is None:
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    lines += ["[quantize]", f"calibration_samples = {CALIBRATION_SAMPLES}",
              f"per_channel = {'true' if params['quantization'] == 'per-channel' else 'false'}", "",
              "[build]", 'output = "build"', ""]
    atomic_write_bytes(path, "\n".join(lines).encode())


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)


def plot_front(document: dict, path: Path) -> None:
    """Accuracy against latency for every trial, colour for RAM, the front joined, the budget drawn."""
    from edgekit.plots import pyplot, save

    plt = pyplot()
    rows = [r for r in document["trials"] if r["state"] == "COMPLETE" and r["values"]]
    front = {f["trial"] for f in document["front"]}
    figure, ax = plt.subplots(figsize=(7.5, 4.8))
    if rows:
        latency = [r["values"]["latency"] for r in rows]
        accuracy = [100 * r["values"]["accuracy"] for r in rows]
        ram = [r["values"]["ram_bytes"] for r in rows]
        markers = ["o" if r["feasible"] else "x" for r in rows]
        points = None
        for m in ("o", "x"):
            idx = [i for i, mk in enumerate(markers) if mk == m]
            if idx:
                points = ax.scatter([latency[i] for i in idx], [accuracy[i] for i in idx], c=[ram[i] for i in idx],
                                    cmap="viridis", marker=m, vmin=min(ram), vmax=max(ram),
                                    label="meets the budget" if m == "o" else "misses it")
        if points is not None:
            figure.colorbar(points, ax=ax, label="RAM bytes")
        fr = sorted((r for r in rows if r["number"] in front), key=lambda r: r["values"]["latency"])
        ax.plot([r["values"]["latency"] for r in fr], [100 * r["values"]["accuracy"] for r in fr], "k--", lw=0.8,
                label="Pareto front")
        for r in fr:
            ax.annotate(str(r["number"]), (r["values"]["latency"], 100 * r["values"]["accuracy"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    budget = document["budget"]
    limit = budget.get("max_instructions") if document["latency_unit"] == "instructions" else \
        budget.get("max_latency_ms")
    if limit:
        ax.axvline(limit, color="r", lw=0.8, label="latency budget")
    base = document.get("baseline")
    if base and budget.get("max_accuracy_drop") is not None:
        ax.axhline(100 * base["accuracy"] - budget["max_accuracy_drop"], color="r", ls=":", lw=0.8,
                   label="accuracy floor")
    if base:
        ax.scatter([base["latency"]], [100 * base["accuracy"]], marker="*", s=120, c="r", label="unpruned model")
    ax.set_xlabel("instructions (QEMU)" if document["latency_unit"] == "instructions" else "latency ms (estimate)")
    ax.set_ylabel("int8 accuracy %")
    ax.set_title(f"edgekit tune: {Path(document['model']).name} on {document['board']}")
    ax.legend(fontsize=7, loc="lower right")
    save(figure, path)



# ---------------------------------------------------------------------------------------------------------------
# The whole tune


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def study_name(model_path: Path, board: str) -> str:
    return f"{Path(model_path).stem}-{board}"


def run_tune(model, data, board_name: str, out, *, space: Space, budget: Budget, trials: int = 20,
             timeout: float | None = None, storage: str | None = None, seed: int = 0, tflm_dir=None,
             measure_firmware: bool = True, quiet: bool = True, progress=None) -> dict:
    """Run (or resume, or join) the study and write DIR's outputs; returns the tune.json document."""
    from edgekit.boards import load_board

    board = load_board(str(board_name))
    model_path, data_path, out = Path(model), Path(data), Path(out)
    if budget.max_instructions is not None and not board.emulated:
        raise UsageError(f"--max-instructions counts instructions in QEMU, and {board.name} is not an emulated "
                         "board; use --max-latency-ms (an estimate from the MACs there)")
    if budget.max_instructions is not None and not measure_firmware:
        raise UsageError("--max-instructions needs the firmware built and run in QEMU")
    if "tflm" in space.backend and not tflm_dir:
        raise UsageError("backend tflm needs a TFLite Micro tree: pass --tflm-dir DIR or set TFLM_DIR")
    if budget.max_accuracy_drop is not None and not 0 <= budget.max_accuracy_drop <= 100:
        raise UsageError(f"--max-accuracy-drop {budget.max_accuracy_drop}: expected points from 0 to 100")
    url = storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
    check_storage(url)
    from edgekit.fileio import MAX_MODEL_BYTES, check_input_file
    from edgekit.models import model_kind

    if model_kind(model_path) == "tflite":  # also refuses what is no model file (a FIFO, /dev/zero) at once
        raise UsageError(f"{model_path.name} is a .tflite; tune prunes and fine-tunes, so it needs the Keras model")
    if model_path.is_file():
        check_input_file(model_path, "model file", MAX_MODEL_BYTES)
    # Until the study is open and the model and data loaded, a failure leaves no folder that was not there before;
    # from then on the folder holds the study, which a later run resumes.
    created = not out.exists()
    try:
        from edgekit.fileio import writing

        with writing(out):
            if out.exists() and not out.is_dir():
                raise EdgekitError(f"-o {out} is a file; expected a folder for the study and its results")
            out.mkdir(parents=True, exist_ok=True)
        measurer = Measurer(board, out / "cache", str(tflm_dir) if tflm_dir else None, measure_firmware)
        tuner = Tuner(model_path, data_path, board, space, budget, out, measurer, seed=seed, quiet=quiet)

        import optuna

        settings = {"model_sha256": sha256_file(model_path), "data_sha256": sha256_file(data_path) if
                    data_path.is_file() else str(data_path.resolve()), "board": board.name, "space": space.to_dict(),
                    "budget": budget.to_dict(), "seed": seed, "measure_firmware": measure_firmware}
        name = study_name(model_path, board.name)
        # A sampler seeded from the trials already there: a resumed or second worker does not repeat the first's.
        sampler_seed = seed
        study = open_study(url, name, settings, optuna.samplers.TPESampler(seed=seed))
        already = len(study.get_trials(deepcopy=False))
        if storage is not None or already:
            sampler_seed = (seed * 1_000_003 + already * 7919 + os.getpid()) % 2**31 if storage else seed + already
        study.sampler = optuna.samplers.TPESampler(
            seed=sampler_seed, multivariate=True,
            n_startup_trials=max(4, min(10, trials // 3)))

        tuner.load()  # after the study: a study of other settings is refused before TensorFlow loads
        baseline = study.user_attrs.get("baseline")
        if baseline is None:
            baseline = tuner.measure_baseline(space.backend[0])
            study.set_user_attr("baseline", baseline)
        tuner.baseline = baseline
        tuner.latency_unit = "instructions" if board.emulated and measure_firmware else "ms"
        if tuner.latency_unit == "instructions" and baseline.get("instructions") is None:
            raise EdgekitError(f"cannot count instructions on {board.name}: {baseline.get('build_note')}; install the "
                               "toolchain and QEMU (scripts/setup.sh)")
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise

    def finished() -> int:
        return sum(1 for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

    start = finished()
    task = progress.add_task("tune", total=trials, completed=min(start, trials)) if progress else None

    def after_trial(study_, frozen):
        if frozen.state == optuna.trial.TrialState.FAIL and frozen.user_attrs.get("error"):
            from edgekit.console import info

            info(f"trial {frozen.number} failed: {frozen.user_attrs['error']}", quiet)
        document = report(study, tuner, url, trials)
        _write_json(out / RESULT, document)
        if progress:
            best = document["best"]
            note = (f"best: trial {best['number']} {100 * best['values']['accuracy']:.2f}%" if best else
                    "nothing meets the budget yet")
            progress.update(task, completed=min(finished(), trials), description=f"tune ({note})")

    remaining = max(0, trials - start)
    if remaining:
        try:
            study.optimize(tuner.run_trial, n_trials=remaining, timeout=timeout, catch=(EdgekitError,),
                           callbacks=[optuna.study.MaxTrialsCallback(
                               trials, states=(optuna.trial.TrialState.COMPLETE,)), after_trial])
        except KeyboardInterrupt:
            _stop_heartbeats()
            _write_json(out / RESULT, report(study, tuner, url, trials))
            raise
        finally:
            _stop_heartbeats()
    document = report(study, tuner, url, trials)
    export(document, tuner)
    _write_json(out / RESULT, document)
    return document


def _stop_heartbeats() -> None:
    """Stop Optuna's heartbeat threads that an interrupt left running: one started just before Ctrl-C arrived
    is never joined (the interrupt skips its `with` exit) and, not being a daemon, would keep the process from
    exiting. Each such thread waits on an Event given as its last argument."""
    import threading

    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        if thread is threading.current_thread() or getattr(target, "__name__", "") != "_record_heartbeat":
            continue
        args = getattr(thread, "_args", ())
        if args and isinstance(args[-1], threading.Event):
            args[-1].set()
            thread.join(timeout=5)


def report(study, tuner: Tuner, url: str, trials: int) -> dict:
    rows = trial_rows(study)
    baseline = dict(tuner.baseline)
    baseline["latency"] = baseline["instructions"] if tuner.latency_unit == "instructions" else baseline["latency_ms"]
    best = best_row(rows)
    done = [r for r in rows if r["state"] == "COMPLETE"]
    return {
        "model": str(tuner.model_path), "data": str(tuner.data_path), "board": tuner.board.name,
        "study": study.study_name, "storage": redact(url), "worker": tuner.worker,
        "metric": tuner.metric_name(),
        "latency_unit": tuner.latency_unit,
        "latency_kind": baseline.get("latency_kind") if tuner.latency_unit == "instructions" else
        latency_estimate(tuner.board, 0)["latency_kind"].replace("0 MACs", "MACs"),
        "ram_kind": baseline.get("ram_source"),
        "space": tuner.space.to_dict(), "budget": tuner.budget.to_dict(), "trials_asked": trials,
        "baseline": baseline,
        "trials": rows,
        "trials_in_study": len(rows), "trials_complete": len(done),
        "trials_run_here": sum(1 for r in rows if r["worker"] == tuner.worker),
        "rejected_before_training": sum(1 for r in done if r["rejected_before_training"]),
        "front": front_rows(rows, tuner.latency_unit),
        "met_budget": best is not None,
        "best": best,
        "closest": [] if best is not None else closest_rows(rows, tuner.budget, baseline["accuracy"]),
        "cache": {"hits": tuner.measurer.hits, "misses": tuner.measurer.misses,
                  "quantize_hits": tuner.measurer.quantize_hits, "quantize_misses": tuner.measurer.quantize_misses},
        "outputs": {},
    }


def export(document: dict, tuner: Tuner) -> None:
    """best.keras, best.tflite and edgekit.toml of the best trial (trained again from its recipe when another
    worker ran it), and front.png."""
    out = tuner.out
    outputs = document["outputs"]
    best = document["best"]
    if best is not None:
        number = best["number"]
        keras_file, tflite_file = out / "trials" / f"{number}.keras", out / "trials" / f"{number}.tflite"
        from edgekit.fileio import atomic_write_bytes

        if keras_file.is_file() and tflite_file.is_file():
            import shutil

            shutil.copyfile(keras_file, out / f".{BEST_KERAS}.tmp")
            os.replace(out / f".{BEST_KERAS}.tmp", out / BEST_KERAS)
            tflite = tflite_file.read_bytes()
        else:  # run by another worker: the same recipe gives the same model
            from edgekit.optimize import run_recipe

            trained, _ = run_recipe(tuner.model, tuner.dataset, best["steps"], quiet=True, int8=False)
            tflite = tuner.quantized(trained, best["params"]["quantization"] == "per-channel")
            trained.save(out / f".tmp.{BEST_KERAS}")
            os.replace(out / f".tmp.{BEST_KERAS}", out / BEST_KERAS)
        atomic_write_bytes(out / BEST_TFLITE, tflite)
        write_recipe(out / RECIPE, best, tuner.model_path, tuner.data_path, tuner.board.name, document["study"])
        outputs.update(keras=str(out / BEST_KERAS), tflite=str(out / BEST_TFLITE), recipe=str(out / RECIPE),
                       tflite_sha256=hashlib.sha256(tflite).hexdigest())
    plot_front(document, out / FRONT_PNG)
    outputs["plot"] = str(out / FRONT_PNG)


def _write_json(path: Path, document: dict) -> None:
    from edgekit.console import _jsonable
    from edgekit.fileio import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(document, indent=2, default=_jsonable, allow_nan=False) + "\n").encode())
