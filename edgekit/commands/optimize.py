"""`edgekit optimize MODEL --data DATA -o OUT.keras`: prune, factorize or distill, and show what each step saved."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from edgekit.console import fmt, info, json_option, print_json, stdout_console, table
from edgekit.errors import EdgekitError, UsageError


class _LearningRate(click.ParamType):
    name = "LR|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, float):
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a learning rate; expected a number > 0 or 'auto'", param, ctx)
        if number <= 0:
            self.fail(f"{value!r} is not a learning rate; expected a number > 0 or 'auto'", param, ctx)
        return number


@click.command("optimize")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Training/evaluation data (.npz with x_train/y_train/x_test/y_test, .npy, or a folder). "
                   "Without it only structured pruning and low-rank run, without fine-tuning.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the optimized .keras (default: MODEL_optimized.keras in the current folder).")
@click.option("--recipe", type=click.Path(path_type=Path), default=None,
              help="An edgekit.toml: its model, data and [[optimize]] steps. Technique flags replace its steps; "
                   "--epochs, --lr and the other settings override those keys of its steps.")
@click.option("--structured", type=float, default=None, metavar="RATIO",
              help="Remove this fraction of the channels of every prunable layer (e.g. 0.5).")
@click.option("--criterion", type=click.Choice(["auto", "l1", "bn"]), default=None,
              help="Channel ranking for --structured: BatchNorm |gamma| where present (auto, the default), or "
                   "filter L1 norm.")
@click.option("--rank-energy", type=float, default=None, metavar="FRACTION",
              help="Factorize Dense and 1x1 Conv2D layers keeping this fraction of the spectral energy (e.g. 0.9).")
@click.option("--prune", type=float, default=None, metavar="SPARSITY",
              help="Magnitude pruning: zero this fraction of the weights (e.g. 0.8); pays only when compressed.")
@click.option("--prune-schedule", type=click.Choice(["constant", "polynomial"]), default=None,
              help="Prune at once (constant) or ramp up during fine-tuning (polynomial, the default).")
@click.option("--prune-scope", type=click.Choice(["layer", "global"]), default=None,
              help="Same sparsity in every layer (layer, the default) or one threshold for all (global).")
@click.option("--distill", is_flag=True, help="Distill from the model as given into the optimized student.")
@click.option("--distill-from", type=click.Path(path_type=Path), default=None, metavar="TEACHER",
              help="Distill from this teacher model; MODEL is the student.")
@click.option("--temperature", type=float, default=None, help="Distillation temperature (default 4).")
@click.option("--alpha", type=float, default=None, help="Weight of the teacher's soft targets (default 0.9).")
@click.option("--epochs", type=int, default=None,
              help="Fine-tuning epochs of every step that trains (training goes on past them until recovered).")
@click.option("--recover-within", type=float, default=None, metavar="POINTS",
              help="Train until the validation score is within POINTS of the model before the step (default 0.5).")
@click.option("--max-epochs", type=int, default=None,
              help="Stop recovering after this many epochs even if not recovered (default 5x --epochs).")
@click.option("--lr", type=_LearningRate(), default=None,
              help="Learning rate (default 3e-3, halved on every plateau), or 'auto': try 3e-3, 1e-3, 3e-4 and "
                   "keep the best on a validation split.")
@click.option("--batch-size", type=int, default=None, help="Training batch size (default 32).")
@click.option("--clipnorm", type=float, default=None, help="Clip each gradient to this norm.")
@click.option("--clipvalue", type=float, default=None, help="Clip gradient values to [-v, v].")
@click.option("--l1", type=float, default=None, help="L1 penalty on kernels while training (drives sparsity).")
@click.option("--no-int8", is_flag=True, help="Skip quantizing after each step (no flash/RAM/int8 figures).")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Also save a PNG of MACs, parameters, flash and RAM after each step, with accuracy.")
@json_option
def command(model, data, output, recipe, structured, criterion, rank_energy, prune, prune_schedule, prune_scope,
            distill, distill_from, temperature, alpha, epochs, recover_within, max_epochs, lr, batch_size, clipnorm,
            clipvalue, l1, no_int8, plot, as_json):
    """Shrink a Keras model (MODEL: .keras or .h5) before quantizing it, and report what each step saved.

    \b
    Steps run in this order: --structured, --rank-energy, --distill/--distill-from, --prune.
    After each: parameters, MACs, accuracy (or agreement with the original without labels) and, with data,
    the int8 model's flash, zlib-compressed size and activation RAM.
    \b
    Examples:
      edgekit optimize model.keras --data data.npz --structured 0.5 --epochs 10 -o small.keras
      edgekit optimize model.keras --data data.npz --prune 0.8 --lr auto -o sparse.keras
      edgekit optimize --recipe edgekit.toml -o small.keras
    """
    from edgekit.optimize import load_data, load_keras_model, run_recipe, steps_from_flags, steps_with_flags

    if model is not None and model.suffix == ".toml" and recipe is None:
        model, recipe = None, model
    training = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "clipnorm": clipnorm, "clipvalue": clipvalue,
                "l1": l1, "recover_within": recover_within, "max_epochs": max_epochs}
    steps = steps_from_flags(
        structured=structured, criterion=criterion or "auto", rank_energy=rank_energy, prune=prune,
        prune_schedule=prune_schedule, prune_scope=prune_scope, distill=distill,
        distill_from=str(distill_from) if distill_from else None, temperature=temperature, alpha=alpha,
        training=training)
    overridden = None
    if recipe is not None:
        from edgekit.recipe import load_recipe

        r = load_recipe(recipe)
        model = model or r.model
        data = data or r.data
        step_keys = {"structured": {"criterion": criterion},
                     "magnitude": {"schedule": prune_schedule, "scope": prune_scope},
                     "distill": {"temperature": temperature, "alpha": alpha}}
        step_keys = {t: {k: v for k, v in keys.items() if v is not None} for t, keys in step_keys.items()}
        technique_given = any(v is not None for v in (structured, rank_energy, prune, distill_from)) or distill
        steps, overridden = steps_with_flags(r.optimize, steps, training, step_keys, technique_given)
        if overridden:
            info(overridden, as_json)
    if model is None:
        raise UsageError("no model given; pass MODEL (a .keras or .h5 file) or --recipe edgekit.toml with 'model'")
    if not steps:
        raise UsageError("nothing to do; give a technique (--structured, --rank-energy, --prune, --distill, "
                         "--distill-from), --epochs for plain fine-tuning, or a recipe with [[optimize]] steps")
    output = Path(output or f"{Path(model).stem}_optimized.keras")
    if output.suffix != ".keras":
        raise EdgekitError(f"output {output} must end in .keras (the optimized model is a Keras 3 model)")
    from edgekit.fileio import check_output_file

    check_output_file(output)  # before the fine-tuning, not after
    if plot is not None:
        from edgekit.plots import check_path

        check_path(plot)

    keras_model = load_keras_model(model, quiet=as_json)
    dataset = load_data(data, keras_model)
    console = None if as_json else stdout_console()

    def show(step_report):
        if console is not None:
            _print_step(console, step_report)

    optimized, report = run_recipe(keras_model, dataset, steps, quiet=as_json, int8=not no_int8, on_step=show)
    _save_keras(optimized, output)
    report = {"model": str(model), "data": None if data is None else str(data), "output": str(output), **report}
    if recipe is not None:
        report["recipe"] = {"path": str(r.path), "overridden_by_flags": overridden}
    if plot is not None:
        plot_steps(report, plot)
        report["plot"] = str(plot)
    if as_json:
        print_json(report)
        return
    info(f"wrote {output} ({report['after']['params']:,} parameters, {report['after']['macs']:,} MACs)")


def _save_keras(model, output: Path) -> None:
    """Save through a temporary .keras beside the output, then rename: never a half-written model."""
    from edgekit.fileio import apply_umask, check_output_file, writing

    check_output_file(output)
    with writing(output):
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".keras", dir=output.parent)
        os.close(fd)
    try:
        with writing(output):
            model.save(tmp)
            apply_umask(tmp)  # mkstemp makes 0600; a saved model is an ordinary file
            os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _change(before, after):
    if before in (None, 0) or after is None:
        return None
    return f"{100 * (after - before) / before:+.1f}%"


def _pct(value):
    return None if value is None else f"{100 * value:.2f}%"


def summary_rows(before: dict, after: dict) -> list[list]:
    """params, MACs, quality and int8 figures: before, after, change."""
    rows = [["parameters", before["params"], after["params"], _change(before["params"], after["params"])],
            ["MACs", before["macs"], after["macs"], _change(before["macs"], after["macs"])]]
    if after["metric"] is not None:
        shown = _pct if after["metric"] in ("accuracy", "agreement") else fmt
        name = {"accuracy": "float accuracy", "agreement": "top-1 agreement with original",
                "mse": "float MSE", "nmse": "output NMSE vs original"}[after["metric"]]
        rows.append([name, shown(before["value"]), shown(after["value"]), None])
    b8, a8 = before.get("int8"), after.get("int8")
    if b8 and a8:
        if a8.get("accuracy") is not None:
            rows.append(["int8 accuracy", _pct(b8["accuracy"]), _pct(a8["accuracy"]), None])
        for key, name in (("flash_bytes", "int8 flash bytes"), ("zlib_bytes", "int8 bytes after zlib"),
                          ("activation_bytes", "int8 activation RAM bytes")):
            rows.append([name, b8[key], a8[key], _change(b8[key], a8[key])])
    return rows


def _print_step(console, s: dict) -> None:
    from edgekit.optimize import TRAIN_KEYS

    settings = ", ".join(f"{k}={v}" for k, v in s["settings"].items()
                         if (k not in TRAIN_KEYS and k != "technique" and v is not None) or k == "epochs")
    console.print(table(f"Step {s['step']}: {s['technique']} ({settings})", ["", "before", "after", "change"],
                        summary_rows(s["before"], s["after"])))
    d = s["details"]
    if s["technique"] == "structured":
        rows = [[", ".join(u["layers"]), u["channels"], u["kept"], u["note"]] for u in d["units"]]
        console.print(table("Channels kept (layers tied by a residual Add are listed, and pruned, together)",
                            ["layers", "channels", "kept", ""], rows, right_align_from=1))
    elif s["technique"] == "magnitude":
        rows = [[r["layer"], r["weights"], _pct(r["sparsity"])] for r in d["layers"]]
        console.print(table("Sparsity per layer (zeros still cost flash and MACs unless compressed)",
                            ["layer", "weights", "sparsity"], rows))
    elif s["technique"] == "lowrank":
        rows = [[r["layer"], f"{r['shape'][0]} x {r['shape'][1]}", r["rank"], r["factorized"]] for r in d["layers"]]
        console.print(table("Low-rank factorization", ["layer", "kernel", "rank", "factorized"], rows))
    elif s["technique"] == "distill":
        console.print(f"teacher: {d['teacher']} ({d['teacher_params']:,} parameters, {d['teacher_macs']:,} MACs)")
    training = d.get("training") or {}
    if training.get("epochs"):
        console.print(training_summary(training))
    if training.get("sweep"):
        swept = ", ".join(f"{t['lr']:g}: {t['val_loss']:.4g}" for t in training["sweep"])
        console.print(f"learning-rate sweep (validation loss): {swept}; kept {training['lr']:g}")


def training_summary(training: dict) -> str:
    """One line: how long fine-tuning ran and whether it got back to the model before the step."""
    line = f"fine-tuning: {training['epochs']} epochs ({training['requested_epochs']} asked"
    if training.get("metric") is None:
        return line + f", best validation loss at epoch {training.get('best_epoch')})"
    unit = "R^2 x 100" if training["metric"] == "r2" else f"% {training['metric']}"
    verdict = "recovered" if training["recovered"] else f"not recovered ({training['stopped']})"
    return (line + f", up to {training['max_epochs']}); validation {training['score']:.2f} {unit} against "
            f"{training['target']:.2f} before the step (within {training['tolerance']:g}): {verdict}; "
            f"weights of epoch {training['best_epoch']} kept")


def plot_steps(report: dict, path) -> None:
    """Grouped bars (percent of the original) of MACs, parameters, flash, zlib size and RAM after each step,
    with accuracy on a second axis."""
    from edgekit.plots import pyplot, save

    plt = pyplot()
    stages = [report["before"]] + [s["after"] for s in report["steps"]]
    labels = ["original"] + [f"{s['step']}. {s['technique']}" for s in report["steps"]]
    series = {"MACs": [st["macs"] for st in stages], "parameters": [st["params"] for st in stages]}
    if all(st.get("int8") for st in stages):
        series["int8 flash"] = [st["int8"]["flash_bytes"] for st in stages]
        series["int8 zlib"] = [st["int8"]["zlib_bytes"] for st in stages]
        series["activation RAM"] = [st["int8"]["activation_bytes"] for st in stages]
    figure, ax = plt.subplots(figsize=(max(6, 1.8 * len(stages) + 3), 4.5))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        base = values[0] or 1
        ax.bar([x + i * width - 0.4 + width / 2 for x in range(len(stages))], [100 * v / base for v in values],
               width, label=name)
    ax.set_xticks(range(len(stages)), labels)
    ax.set_ylabel("% of the original model")
    ax.set_title(f"edgekit optimize: {Path(report['model']).name}")
    ax.legend(loc="upper right", fontsize=8)
    if stages[0]["metric"] is not None:
        quality = [st["value"] for st in stages]
        twin = ax.twinx()
        twin.plot(range(len(stages)), [100 * q if stages[0]["metric"] in ("accuracy", "agreement") else q
                                       for q in quality], "k-o", label=stages[0]["metric"])
        if stages[0]["metric"] in ("accuracy", "agreement"):
            twin.set_ylim(max(0.0, 100 * min(quality) - 5), 100.5)
        twin.set_ylabel(stages[0]["metric"] + (" %" if stages[0]["metric"] in ("accuracy", "agreement") else ""))
        twin.legend(loc="lower left", fontsize=8)
    save(figure, path)
