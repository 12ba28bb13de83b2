"""The optimize stage: shrink a Keras 3 model before quantizing it, and say what each step really saved.

A recipe is an ordered list of steps (dicts), the same from the CLI flags, from `edgekit.toml` and from Python:

    model, report = run_recipe(model, dataset, [{"technique": "structured", "ratio": 0.5, "epochs": 10}])

Techniques (one module each): magnitude (pruning.py), structured (structured.py), lowrank (lowrank.py),
distill (distill.py), finetune (finetune.py). After every step the report has params, MACs, quality
(accuracy, or output agreement with the original model without labels) and, when there is data to calibrate
with, the int8 flash size, its zlib-compressed size and the activation RAM of the quantized model.
"""

from __future__ import annotations

import copy

from edgekit.errors import EdgekitError

TECHNIQUES = ("structured", "lowrank", "magnitude", "distill", "finetune")

# key -> (kind, default); kinds are checked by validate_step. "epochs": None means the technique's default.
TRAIN_KEYS = {
    "epochs": ("count", None),
    "lr": ("lr", 3e-3),
    "batch_size": ("positive_int", 32),
    "clipnorm": ("positive_or_none", None),
    "clipvalue": ("positive_or_none", None),
    "l1": ("non_negative", 0.0),
    "seed": ("count", 0),
    "recover_within": ("non_negative", 0.5),
    "max_epochs": ("count_or_none", None),
}
STEP_KEYS = {
    "structured": {"ratio": ("fraction", None), "criterion": (("auto", "l1", "bn"), "auto")},
    "lowrank": {"energy": ("energy", 0.9)},
    "magnitude": {"sparsity": ("fraction", None), "schedule": (("constant", "polynomial"), "polynomial"),
                  "scope": (("layer", "global"), "layer")},
    "distill": {"teacher": ("path_or_none", None), "temperature": ("positive", 4.0), "alpha": ("unit", 0.9)},
    "finetune": {},
}
# Epochs when the step does not say: steps that can run without data train only when data is there.
DEFAULT_EPOCHS = {"structured": 10, "lowrank": 5, "magnitude": 10, "distill": 15, "finetune": 10}
NEEDS_DATA = {"magnitude", "distill", "finetune"}

_EXPECTED = {
    "count": "an integer >= 0", "count_or_none": "an integer >= 0", "positive_int": "an integer > 0", "lr": "a number > 0 or \"auto\"",
    "positive_or_none": "a number > 0", "non_negative": "a number >= 0", "fraction": "a number in [0, 1)",
    "energy": "a number in (0, 1]", "positive": "a number > 0", "unit": "a number in [0, 1]",
    "path_or_none": "a file path (string)",
}


def _valid(kind, value) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(kind, tuple):
        return value in kind
    return {
        "count": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "count_or_none": value is None or isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "positive_int": isinstance(value, int) and not isinstance(value, bool) and value > 0,
        "lr": value == "auto" or (number and value > 0),
        "positive_or_none": value is None or (number and value > 0),
        "non_negative": number and value >= 0,
        "fraction": number and 0 <= value < 1,
        "energy": number and 0 < value <= 1,
        "positive": number and value > 0,
        "unit": number and 0 <= value <= 1,
        "path_or_none": value is None or isinstance(value, str),
    }[kind]


def validate_step(step: dict, where: str = "optimize step") -> dict:
    """The step with defaults filled in; EdgekitError naming the key and what was expected otherwise."""
    if not isinstance(step, dict):
        raise EdgekitError(f"{where}: expected a table with a 'technique' key, got {step!r}")
    technique = step.get("technique")
    if technique not in STEP_KEYS:
        raise EdgekitError(f"{where}: 'technique' must be one of {', '.join(TECHNIQUES)}, got {technique!r}")
    schema = {**STEP_KEYS[technique], **TRAIN_KEYS}
    result = {"technique": technique}
    for key, value in step.items():
        if key == "technique":
            continue
        if key not in schema:
            raise EdgekitError(f"{where} ({technique}): unknown key {key!r}; expected one of "
                               f"{', '.join(sorted(schema))}")
        kind = schema[key][0]
        if isinstance(value, int) and not isinstance(value, bool) and kind in ("fraction", "energy", "positive",
                                                                               "unit", "non_negative"):
            value = float(value)
        if not _valid(kind, value):
            expected = " or ".join(repr(k) for k in kind) if isinstance(kind, tuple) else _EXPECTED[kind]
            raise EdgekitError(f"{where} ({technique}): key {key!r} must be {expected}, got {value!r}")
        result[key] = value
    for key, (kind, default) in schema.items():
        if key not in result:
            if default is None and kind in ("fraction",):
                raise EdgekitError(f"{where} ({technique}): key {key!r} is required ({_EXPECTED[kind]})")
            result[key] = default
    return result


def load_keras_model(path, quiet: bool = True):
    """A Keras 3 model from .keras/.h5 (tf_keras-only files, such as older .h5, are converted to Keras 3)."""
    from edgekit.console import info
    from edgekit.models import load_model
    from edgekit.optimize.graph import to_keras3

    loaded = load_model(path)
    if loaded.note:
        info(f"note: {loaded.note}", quiet)
    if loaded.framework not in ("keras3", "tf_keras"):
        raise EdgekitError(f"{path} is a {loaded.framework} model; optimize needs a Keras model (.keras or .h5)")
    return to_keras3(loaded.model)


def load_data(data, model=None):
    """A Dataset from a path (fitted to the model's input shape), a Dataset as is, or None."""
    if data is None or not isinstance(data, (str, bytes)) and not hasattr(data, "__fspath__"):
        return data
    from edgekit.data import load_dataset

    shape = tuple(model.inputs[0].shape[1:]) if model is not None else None
    output_shape = tuple(model.outputs[0].shape[1:]) if model is not None else None
    return load_dataset(data, input_shape=shape, output_shape=output_shape)


def _has_data(dataset) -> bool:
    return dataset is not None and getattr(dataset, "x_train", None) is not None and len(dataset.x_train) > 0


def measure(model, dataset, reference_outputs=None, int8: bool = True) -> dict:
    """Params, MACs, quality and (with data and int8) the quantized model's flash, zlib size and activation RAM."""
    from edgekit.optimize.metrics import int8_figures, model_macs, model_params, quality

    figures = {"params": model_params(model), "macs": model_macs(model),
               **quality(model, dataset, reference_outputs)}
    figures["int8"] = int8_figures(model, dataset) if int8 and _has_data(dataset) else None
    if figures["int8"] is not None:
        figures["int8"].pop("tflite_bytes")
        figures["keras_params"] = figures["params"]  # Keras' count_params (BatchNorm statistics included)
        figures["params"] = figures["int8"].pop("params")  # the graph's count: what analyze prints
        figures["macs"] = figures["int8"].pop("macs")
    return figures


def run_recipe(model, dataset, steps: list[dict], quiet: bool = False, *, int8: bool = True, on_step=None):
    """Apply the steps in order; returns (optimized Keras 3 model, report).

    `model` is a Keras 3 or tf_keras model, or a path. `dataset` is an edgekit.data.Dataset or a data path (y may
    be None; without any dataset only structured and lowrank run, without fine-tuning). `int8=False` skips the
    quantization after each step (no flash/zlib/RAM figures; faster). `on_step(step_report)` is called after each
    step (the CLI prints its table there). The input model is not modified.
    """
    from edgekit.optimize.graph import to_keras3
    from edgekit.optimize.metrics import predict, quality

    steps = [validate_step(s, f"optimize step {i + 1}") for i, s in enumerate(steps)]
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_keras_model(model, quiet)
    original = to_keras3(model)
    dataset = load_data(dataset, original)
    has_data = _has_data(dataset)
    for i, step in enumerate(steps):
        if step["technique"] in NEEDS_DATA and not has_data and not (step["technique"] == "magnitude"
                                                                     and step["epochs"] == 0
                                                                     and step["schedule"] == "constant"):
            raise EdgekitError(f"optimize step {i + 1} ({step['technique']}) needs training data; pass --data FILE "
                               f"(or `data` in the recipe); without data only structured and lowrank can run")
        if step["epochs"] and step["epochs"] > 0 and not has_data:
            raise EdgekitError(f"optimize step {i + 1} ({step['technique']}) fine-tunes for {step['epochs']} "
                               f"epochs but there is no training data; pass --data FILE or set epochs to 0")

    if not has_data:
        from edgekit.console import info

        info("no data: steps run without fine-tuning, and accuracy and int8 figures need data", quiet)
    current = _copy(original)
    eval_x = _eval_inputs(dataset)
    reference_outputs = predict(original, eval_x) if eval_x is not None else None
    before = measure(current, dataset, reference_outputs, int8)
    report = {"before": before, "steps": []}
    for i, step in enumerate(steps):
        if step["epochs"] is None:
            step["epochs"] = DEFAULT_EPOCHS[step["technique"]] if has_data else 0
        teacher = original
        if step["technique"] == "distill" and step["teacher"]:
            teacher = load_keras_model(step["teacher"])
            if eval_x is not None:  # without labels, quality from here on is agreement with this teacher
                reference_outputs = predict(teacher, eval_x)
                before = {**before, **quality(current, dataset, reference_outputs)}
        current, details = _run_step(current, teacher, dataset, step, quiet)
        after = measure(current, dataset, reference_outputs, int8)
        step_report = {"step": i + 1, "technique": step["technique"], "settings": step, "before": before,
                       "after": after, "details": details}
        report["steps"].append(step_report)
        if on_step is not None:
            on_step(step_report)
        before = after
    report["after"] = before
    return _copy(current), report  # uncompiled: no optimizer state travels into the saved .keras


def _eval_inputs(dataset):
    if not _has_data(dataset):
        return None
    if getattr(dataset, "x_test", None) is not None and len(dataset.x_test):
        return dataset.x_test
    return dataset.x_train


def _copy(model):
    """An independent Keras 3 copy (same architecture, same weights)."""
    from edgekit.optimize.graph import build_model, read_graph

    return build_model(read_graph(model), name=model.name)


def _run_step(model, teacher, dataset, step, quiet):
    """One technique on a copy of `model` (`teacher`: the model distillation learns from); returns (new model,
    details for the report)."""
    from edgekit.optimize.finetune import TrainSettings, fine_tune

    settings = TrainSettings.from_step(step)
    technique = step["technique"]
    if technique == "structured":
        from edgekit.optimize.structured import structured_prune

        pruned, units = structured_prune(model, step["ratio"], step["criterion"])
        training = fine_tune(pruned, dataset, settings, reference=model, quiet=quiet,
                             description=f"fine-tune after structured pruning {step['ratio']:.0%}")
        return pruned, {"units": units, "training": training}
    if technique == "lowrank":
        from edgekit.optimize.lowrank import low_rank

        factored, layers = low_rank(model, step["energy"])
        training = fine_tune(factored, dataset, settings, reference=model, quiet=quiet,
                             description="fine-tune after low-rank factorization")
        return factored, {"layers": layers, "training": training}
    if technique == "magnitude":
        from edgekit.optimize.pruning import magnitude_prune

        sparse = _copy(model)
        details = magnitude_prune(sparse, dataset, step["sparsity"], step["schedule"], step["scope"], settings,
                                  reference=model, quiet=quiet)
        return sparse, details
    if technique == "distill":
        from edgekit.optimize.distill import distill
        from edgekit.optimize.metrics import model_macs, model_params

        student = _copy(model)
        training = distill(student, teacher, dataset, step["temperature"], step["alpha"], settings, quiet=quiet)
        return student, {"teacher": step["teacher"] or "the model before optimize",
                         "teacher_params": model_params(teacher), "teacher_macs": model_macs(teacher),
                         "training": training}
    tuned = _copy(model)
    training = fine_tune(tuned, dataset, settings, reference=model, quiet=quiet)
    return tuned, {"training": training}


def steps_from_flags(*, structured=None, criterion="auto", rank_energy=None, prune=None, prune_schedule=None,
                     prune_scope=None, distill=False, distill_from=None, temperature=None, alpha=None,
                     training=None) -> list[dict]:
    """The CLI flags as recipe steps, in the order that makes sense: shrink the architecture first
    (structured, low-rank), recover with distillation, and prune weights last (training after it would undo the
    zeros). With distillation, the structural steps skip their own fine-tuning: distillation is the recovery.
    Without any technique but with --epochs, a plain fine-tuning step.
    """
    training = {k: v for k, v in (training or {}).items() if v is not None}
    distilling = distill or distill_from is not None
    steps = []
    structural_training = dict(training, epochs=0) if distilling else training
    if structured is not None:
        steps.append({"technique": "structured", "ratio": structured, "criterion": criterion,
                      **structural_training})
    if rank_energy is not None:
        steps.append({"technique": "lowrank", "energy": rank_energy, **structural_training})
    if distilling:
        step = {"technique": "distill", "teacher": distill_from, **training}
        if temperature is not None:
            step["temperature"] = temperature
        if alpha is not None:
            step["alpha"] = alpha
        steps.append(step)
    if prune is not None:
        step = {"technique": "magnitude", "sparsity": prune, **training}
        if prune_schedule:
            step["schedule"] = prune_schedule
        if prune_scope:
            step["scope"] = prune_scope
        steps.append(step)
    if not steps and training.get("epochs"):
        steps.append({"technique": "finetune", **training})
    return [copy.deepcopy(s) for s in steps]


_FLAG_NAMES = {"schedule": "--prune-schedule", "scope": "--prune-scope"}
_MAIN_KEY = {"structured": "ratio", "lowrank": "energy", "magnitude": "sparsity", "distill": "teacher"}


def describe_step(step: dict) -> str:
    """'structured ratio=0.5': a step in a few words, for the line that says what the flags replaced."""
    key = _MAIN_KEY.get(step.get("technique"))
    return f"{step.get('technique')} {key}={step[key]}" if key and step.get(key) is not None else \
        str(step.get("technique"))


def steps_with_flags(recipe_steps: list[dict], flag_steps: list[dict], training: dict, step_keys: dict,
                     technique_given: bool) -> tuple[list[dict], str | None]:
    """The recipe's [[optimize]] steps with the command line applied, and one line saying what changed.

    The rule: technique flags (--structured, --rank-energy, --prune, --distill, --distill-from) give the steps,
    which then replace the recipe's; the other flags override keys of the recipe's steps: training flags
    (--epochs, --lr, ...) on every step, technique settings (--criterion, --prune-schedule, --prune-scope,
    --temperature, --alpha; `step_keys`: technique -> {key: value}) on the steps of that technique.
    """
    training = {k: v for k, v in (training or {}).items() if v is not None}
    if not recipe_steps:
        return flag_steps, None
    if technique_given:
        return flag_steps, (f"the command line's steps ({', '.join(describe_step(s) for s in flag_steps)}) replace "
                            f"the recipe's [[optimize]] steps ({', '.join(describe_step(s) for s in recipe_steps)})")
    for technique, keys in step_keys.items():
        if keys and not any(s["technique"] == technique for s in recipe_steps):
            flags = ", ".join(_FLAG_NAMES.get(k, f"--{k}") for k in keys)
            raise EdgekitError(f"{flags} set {technique} steps, and the recipe's [[optimize]] steps "
                               f"({', '.join(describe_step(s) for s in recipe_steps)}) have none")
    steps, changes = [], []
    for i, recipe_step in enumerate(recipe_steps):
        step = copy.deepcopy(recipe_step)
        new = {**training, **step_keys.get(step["technique"], {})}
        replaced = [f"{k}={v}" for k, v in new.items() if step.get(k, _UNSET) != v]
        step.update(new)
        if replaced:
            changes.append(f"step {i + 1} ({step['technique']}): {', '.join(replaced)}")
        steps.append(step)
    note = f"the command line overrides the recipe's [[optimize]] steps: {'; '.join(changes)}" if changes else None
    return steps, note


_UNSET = object()
