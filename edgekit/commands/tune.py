"""`edgekit tune`: search optimize/quantize/backend settings for the best model that meets a device budget."""

import os
from pathlib import Path

import click

from edgekit.console import json_option, print_json, progress, stdout_console, table

_RANGE_HELP = "LOW:HIGH, one value, or off"


@click.command("tune")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Training and held-out data (.npz with x_train/y_train/x_test/y_test); each trial is scored on "
                   "x_test.")
@click.option("--board", "board_name", default=None, help="Target board (see `edgekit boards`).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Folder for the study (study.db), tune.json, front.png, best.keras/.tflite and edgekit.toml.")
@click.option("--recipe", type=click.Path(path_type=Path), default=None,
              help="An edgekit.toml: its model, data, board, backend and [tune] table (flags win key by key; its "
                   "[[optimize]] steps are what tune searches instead).")
@click.option("--max-ram", type=int, default=None, metavar="BYTES", help="RAM budget.")
@click.option("--max-flash", type=int, default=None, metavar="BYTES", help="Flash budget.")
@click.option("--max-latency-ms", type=float, default=None, metavar="MS",
              help="Latency budget (on emulated boards: instructions at the board's clock; elsewhere an estimate).")
@click.option("--max-instructions", type=int, default=None, metavar="N",
              help="Instructions per inference, counted in QEMU (emulated boards).")
@click.option("--max-accuracy-drop", type=float, default=None, metavar="POINTS",
              help="At most this many points below the unpruned model's int8 metric.")
@click.option("--trials", type=int, default=None, help="Trials in the study (default 20; a resumed or shared "
                                                       "study runs only what is missing).")
@click.option("--timeout", type=float, default=None, metavar="S", help="Stop starting trials after S seconds.")
@click.option("--storage", default=None, metavar="URL",
              help="An Optuna RDB URL (postgresql://user@host/db) shared by workers; default: DIR/study.db "
                   "(SQLite).")
@click.option("--structured", default=None, metavar="RANGE", help=f"Structured pruning ratio ({_RANGE_HELP}; "
                                                                  "default 0:0.75).")
@click.option("--rank-energy", default=None, metavar="RANGE", help=f"Low-rank energy ({_RANGE_HELP}; default off).")
@click.option("--prune", default=None, metavar="RANGE", help=f"Magnitude sparsity ({_RANGE_HELP}; default off).")
@click.option("--distill", default=None, metavar="on|off|both", help="Distillation from the model given "
                                                                     "(default both).")
@click.option("--epochs", default=None, metavar="RANGE", help="Fine-tuning epochs (LOW:HIGH or one value; "
                                                              "default 1:8).")
@click.option("--lr", default=None, metavar="RANGE", help="Learning rate, sampled on a log scale "
                                                          "(default 0.0003:0.01).")
@click.option("--quantization", default=None, metavar="LIST",
              help="per-channel, per-tensor or both, comma-separated (default both).")
@click.option("--backend", default=None, metavar="LIST",
              help="native, tflm or both (default native, and tflm too when a TFLite Micro tree is given).")
@click.option("--tflm-dir", type=click.Path(file_okay=False), default=None,
              help="TFLite Micro tree for the tflm backend (default: $TFLM_DIR).")
@click.option("--seed", type=int, default=None, help="Seed of the sampler and of training (default 0).")
@click.option("--analysis-only", is_flag=True,
              help="Measure RAM and flash by analysis only and estimate latency (no firmware built, no QEMU).")
@json_option
def command(model, data, board_name, output, recipe, max_ram, max_flash, max_latency_ms, max_instructions,
            max_accuracy_drop, trials, timeout, storage, structured, rank_energy, prune, distill, epochs, lr,
            quantization, backend, tflm_dir, seed, analysis_only, as_json):
    """Search for the model that best meets a budget on a board (MODEL: .keras or .h5).

    \b
    Each trial picks settings (structured pruning ratio, low-rank energy, sparsity, distillation, fine-tuning
    epochs and learning rate, per-channel or per-tensor int8, backend), rejects them before training when the
    edited graph already misses the RAM, flash or time budget, and otherwise trains, quantizes and measures
    the model: int8 accuracy on x_test, RAM, flash and (emulated boards) instructions in QEMU.
    \b
    Examples:
      edgekit tune model.keras --data data.npz --board mps2-an386 --max-ram 8192 \\
          --max-instructions 400000 --max-accuracy-drop 1 -o tune-out
      edgekit tune model.keras ... -o tune-out --storage postgresql://tune@db/edgekit   # one worker of many
    """
    from edgekit.errors import UsageError
    from edgekit.tune import Budget, Space, parse_choices, parse_range, run_tune

    if model is not None and model.suffix == ".toml" and recipe is None:
        model, recipe = None, model
    table_values = {}
    if recipe is not None:
        from edgekit.recipe import load_recipe

        r = load_recipe(recipe)
        model = model or r.model
        data = data or r.data
        board_name = board_name or r.board
        table_values = dict(r.tune)
    if model is None:
        raise UsageError("no model given; pass MODEL (a .keras or .h5 file) or --recipe edgekit.toml with 'model'")
    if data is None:
        raise UsageError("no data given; pass --data FILE (.npz with x_train/y_train/x_test/y_test)")
    if not board_name:
        raise UsageError("no board given; pass --board NAME (see `edgekit boards`)")
    if output is None:
        raise UsageError("no output folder given; pass -o DIR (the study and its results go there)")
    for path, what in ((model, "model"), (data, "data")):
        if not Path(path).exists():
            raise UsageError(f"{what} not found: {path}")

    tflm_dir = tflm_dir or os.environ.get("TFLM_DIR") or None
    space = Space()
    flags = {"structured": structured, "rank_energy": rank_energy, "prune": prune, "epochs": epochs, "lr": lr}
    for key, value in flags.items():
        if value is not None:
            setattr(space, key, parse_range(value, key))
        elif key in table_values:
            setattr(space, key, table_values[key])
    for key, value in {"distill": distill, "quantization": quantization, "backend": backend}.items():
        if value is not None:
            setattr(space, key, parse_choices(value, key))
        elif key in table_values:
            setattr(space, key, table_values[key])
    if backend is None and "backend" not in table_values:
        recipe_backend = r.backend if recipe is not None else None
        space.backend = (recipe_backend,) if recipe_backend else ("native", "tflm") if tflm_dir else ("native",)
    if space.epochs is None:
        space.epochs = (0, 0)
    if space.lr is None:
        raise UsageError("--lr cannot be off; give LOW:HIGH or one value")
    budget_flags = {"max_ram": max_ram, "max_flash": max_flash, "max_latency_ms": max_latency_ms,
                    "max_instructions": max_instructions, "max_accuracy_drop": max_accuracy_drop}
    budget = Budget(**{k: v if v is not None else table_values.get(k) for k, v in budget_flags.items()})
    for key in ("max_ram", "max_flash", "max_instructions"):
        if getattr(budget, key) == 0:
            raise UsageError(f"--{key.replace('_', '-')} 0: expected a budget > 0")
    if budget.max_latency_ms is not None and budget.max_latency_ms <= 0:
        raise UsageError(f"--max-latency-ms {budget.max_latency_ms}: expected a budget > 0")
    trials = trials if trials is not None else table_values.get("trials", 20)
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout {timeout}: expected seconds > 0")
    timeout = timeout if timeout is not None else table_values.get("timeout")
    storage = storage or table_values.get("storage")
    seed = seed if seed is not None else table_values.get("seed", 0)

    with progress(quiet=as_json) as bar:
        document = run_tune(model, data, board_name, output, space=space, budget=budget, trials=trials,
                            timeout=timeout, storage=storage, seed=seed, tflm_dir=tflm_dir,
                            measure_firmware=not analysis_only, quiet=as_json, progress=bar)
    if as_json:
        print_json(document)
        return
    print_front(document)


def print_front(document: dict) -> None:
    """The Pareto front (and the unpruned model), the best trial meeting the budget, or the closest ones."""
    from edgekit.tune import describe

    console = stdout_console()
    unit = "instructions" if document["latency_unit"] == "instructions" else "latency ms (est.)"
    rows_by_number = {r["number"]: r for r in document["trials"]}
    base = document["baseline"]
    rows = [["unpruned", f"{100 * base['accuracy']:.2f}%", base["ram_bytes"], base["flash_bytes"],
             base["latency"] if unit == "instructions" else round(base["latency"], 3), "-", "-"]]
    for f in document["front"]:
        number = f["trial"]
        r = rows_by_number[number]
        v = r["values"]
        meets = "yes" if r["feasible"] else ("rejected before training" if r["rejected_before_training"] else "no")
        rows.append([number, f"{100 * v['accuracy']:.2f}%", int(v["ram_bytes"]), int(v["flash_bytes"]),
                     int(v["latency"]) if unit == "instructions" else round(v["latency"], 3), meets,
                     describe(r["params"])])
    title = (f"edgekit tune: Pareto front of {document['trials_complete']} trials "
             f"({document['trials_run_here']} run here, {document['rejected_before_training']} rejected before "
             f"training) of {Path(document['model']).name} on {document['board']}")
    console.print(table(title, ["trial", "accuracy", "RAM B", "flash B", unit, "meets budget", "settings"], rows,
                        right_align_from=1))
    console.print(f"accuracy: {document['metric']}; RAM: {document['ram_kind']}; latency: {document['latency_kind']}",
                  highlight=False, markup=False)
    best = document["best"]
    if best is not None:
        v = best["values"]
        drop = 100 * (base["accuracy"] - v["accuracy"])
        console.print(f"best within the budget: trial {best['number']} ({describe(best['params'])}): accuracy "
                      f"{100 * v['accuracy']:.2f}% ({abs(drop):.2f} points {'lost' if drop >= 0 else 'gained'}), RAM {int(v['ram_bytes']):,} B, flash "
                      f"{int(v['flash_bytes']):,} B, {unit} {v['latency']:,.0f}", highlight=False, markup=False)
        out = document["outputs"]
        console.print(f"wrote {out['keras']}, {out['tflite']} and {out['recipe']} (edgekit build --recipe "
                      f"{out['recipe']})", highlight=False, markup=False)
    else:
        console.print("no trial meets the budget; the closest:", highlight=False, markup=False)
        for c in document["closest"]:
            console.print(f"  trial {c['number']} ({describe(c['params'])}): {'; '.join(c['violations'] or [])}",
                          highlight=False, markup=False)
    if document["outputs"].get("plot"):
        console.print(f"front picture: {document['outputs']['plot']}", highlight=False, markup=False)
