"""`edgekit build`: the pipeline from a model to a project (and firmware) for one board.

Stages, each the same code as its standalone command: [optimize] -> [quantize] (a .tflite int8 model skips both)
-> analyze (refuse when the model does not fit, saying by how much and what would help) -> generate the project
(board -> its platform; backend from the user or the board's default; the pair checked on both sides, see
edgekit.project; backend then platform into the staging folder) -> compile when the platform's toolchain is
here -> [flash] -> [profile]. The build folder gets the int8 model and `edgekit-build.json`, which `flash` and `profile`
read so that a user never repeats the board or the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgekit.errors import EdgekitError, UsageError
from edgekit.report import REPORT_DATA  # what `edgekit report` reads beyond the manifest

MANIFEST = "edgekit-build.json"
BACKENDS = ("tflm", "native")


def default_backend(board) -> str:
    """The board file's `default_backend`, else its platform's (TFLite Micro for real boards, native for
    emulated and host ones)."""
    from edgekit.platforms import platform_for

    explicit = board.data.get("default_backend")
    if explicit:
        return str(explicit)
    return platform_for(board).default_backend


def _kib(n) -> str:
    return f"{n / 1024:,.1f} KiB"


def _stage_unavailable(stage: str, error: ImportError) -> EdgekitError:
    return EdgekitError(f"stage {stage} not available in this edgekit ({error.name or error})")


def _load_recipe(path):
    try:
        from edgekit.recipe import load_recipe
    except ImportError as error:
        raise _stage_unavailable("recipe", error) from None
    return load_recipe(path)


def _int8_model(model_path: Path, data, recipe, quiet: bool, stages: list, advance, source: dict):
    """The graph of the int8 model: read as is, or optimized and quantized from a Keras model. `source` gets what
    the build folder keeps of where it came from: the float .tflite ("float_bytes") and the Keras layer names."""
    from edgekit.tflite_model import load_tflite, parse_tflite, require_int8

    from edgekit.models import model_kind

    if model_kind(model_path) == "tflite":
        graph = load_tflite(model_path)
        if not graph.is_fully_int8:
            from edgekit.quantize import float_io_boundary, remove_float_io

            if float_io_boundary(graph) is not None:  # int8 inside, float ends: drop the boundary ops
                graph = parse_tflite(remove_float_io(graph.model_bytes, graph.name), name=graph.name)
                stages.append({"stage": "quantize", "skipped": "int8 inside: float input/output ops removed"})
                advance("analyze")
                return graph, None
            if data is not None:  # a float .tflite: quantized below from its path (ai-edge-quantizer)
                return _quantize_stage(model_path, model_path, data, recipe, stages, advance, source), None
        require_int8(graph)
        stages.append({"stage": "quantize", "skipped": "the model is already a .tflite"})
        advance("analyze")
        return graph, None
    if data is None:
        raise UsageError(f"{model_path.name} is a float model: pass --data (calibration samples) to quantize it, "
                         f"or give an int8 .tflite")
    from edgekit.data import load_dataset
    from edgekit.models import load_model

    loaded = load_model(model_path)
    # fitted to the model like quantize's: image/WAV folders are resized to its input, labels checked against it
    dataset = load_dataset(data, input_shape=loaded.input_shape, output_shape=loaded.output_shape)
    steps = list(getattr(recipe, "optimize", None) or getattr(recipe, "steps", None) or []) if recipe else []
    optimize_report = None
    if steps:
        started = time.monotonic()
        try:
            from edgekit.optimize import run_recipe
        except ImportError as error:
            raise _stage_unavailable("optimize", error) from None
        model, optimize_report = run_recipe(loaded.model, dataset, steps, quiet=True)
        loaded = model
        stages.append({"stage": "optimize", "seconds": round(time.monotonic() - started, 2),
                       "before": _without_bytes(optimize_report["before"]),
                       "after": _without_bytes(optimize_report["after"]),
                       "steps": [step["technique"] for step in optimize_report["steps"]]})
    return _quantize_stage(model_path, loaded, dataset, recipe, stages, advance, source), optimize_report


def _quantize_stage(model_path: Path, model, data, recipe, stages: list, advance, source: dict):
    """Quantize a Keras model (or a float .tflite, given by its path) to the fully int8 graph."""
    from edgekit.quantize import quantize
    from edgekit.tflite_model import parse_tflite, require_int8

    dataset = data  # a Dataset, or a path that quantize reads fitted to the model's input
    advance("quantize")
    started = time.monotonic()
    options = dict(getattr(recipe, "quantize", None) or {}) if recipe else {}
    kwargs = {k: options[k] for k in ("calibration_samples", "eval_samples", "per_channel") if k in options}
    result = quantize(model, dataset, quiet=True, **kwargs)
    source.update(float_bytes=result.float_bytes, keras_names=result.keras_names, quantize_report=result.report)
    stages.append({"stage": "quantize", "seconds": round(time.monotonic() - started, 2),
                   "report": {k: v for k, v in result.report.items() if not isinstance(v, (list, dict))}})
    advance("analyze")
    graph = parse_tflite(result.tflite_bytes, name=model_path.stem if model_path.is_file() else model_path.name)
    require_int8(graph)
    return graph


def _without_bytes(figures: dict) -> dict:
    """An optimize measurement without the flatbuffer it carries (not for JSON)."""
    int8 = {k: v for k, v in (figures.get("int8") or {}).items() if k != "tflite_bytes"}
    return {**{k: v for k, v in figures.items() if k != "int8"}, "int8": int8 or None}


def check_fit(graph, board, backend: str, report: dict) -> dict:
    """Refuse a model that does not fit; returns where the arena goes ({'arena_in_psram': bool, ...})."""
    ram, flash = report["ram"], report["flash"]
    from edgekit.platforms import platform_for

    placement = {"arena_in_psram": False, "internal_ram_budget": board.ram_bytes - board.runtime_ram_estimate(backend)}
    problems = []
    if ram and ram["fits"] is False:
        arena = report["ram_breakdown"]["arena_bytes"] or 0
        if backend == "tflm" and board.psram_bytes and arena <= board.psram_bytes and platform_for(board).psram_arena:
            placement["arena_in_psram"] = True
        else:
            problems.append(f"it needs {_kib(ram['needed_bytes'])} of RAM and {board.name} has "
                            f"{_kib(ram['available_bytes'])} ({_kib(-ram['margin_bytes'])} short)")
    elif ram and ram["fits"] is None:
        problems.append("TFLite Micro cannot load it")
    if flash and flash["fits"] is False:
        problems.append(f"it needs {_kib(flash['needed_bytes'])} of flash and {board.name} has "
                        f"{_kib(flash['available_bytes'])} ({_kib(-flash['margin_bytes'])} short)")
    if problems:
        tips = report.get("suggestions") or []
        hint = f"; what would help: {'; '.join(tips)}" if tips else ""
        raise EdgekitError(f"{graph.name} does not fit {board.name} with the {backend} backend: "
                           f"{' and '.join(problems)}{hint}")
    return placement


def check_tflm_arena(graph, board, arena_bytes: int | None, placement: dict, arena_margin: float | None = None,
                     kernels: str | None = None) -> dict:
    """The arena the project will reserve (measured + scratch + margin, or --arena-bytes) must fit the RAM too."""
    from edgekit.backends.tflm import arena_size
    from edgekit.platforms import platform_for

    platform = platform_for(board)
    target = platform.target(board, kernels=kernels)
    arena = arena_size(graph, target.kernels, arena_bytes, arena_margin, target.word_bytes)
    runtime = board.runtime_ram_estimate("tflm")
    if placement["arena_in_psram"] or arena.bytes + runtime <= board.ram_bytes:
        return placement
    if board.psram_bytes and arena.bytes <= board.psram_bytes and platform.psram_arena:
        return dict(placement, arena_in_psram=True)
    short = arena.bytes + runtime - board.ram_bytes
    how = "set by --arena-bytes" if arena.overridden else (
        f"{arena.target_bytes:,} measured for a 32-bit target + {arena.scratch_bytes:,} kernel scratch + "
        f"{arena.margin_bytes:,} margin")
    raise EdgekitError(
        f"{graph.name} does not fit {board.name}: the TFLite Micro arena of {arena.bytes:,} bytes ({how}) plus "
        f"{runtime:,} bytes of runtime needs {arena.bytes + runtime:,} bytes of RAM and the board has "
        f"{board.ram_bytes:,} ({short:,} short); a smaller --arena-bytes (at least {arena.target_bytes:,}), a "
        f"smaller input or channel pruning (edgekit optimize) would help")


def _tensor(t) -> dict:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
            "scale": float(t.scale[0]) if t.scale.size else None,
            "zero_point": int(t.zero_point[0]) if t.zero_point.size else None}


def _write_manifest(folder: Path, manifest: dict) -> None:
    from edgekit.fileio import atomic_write_bytes

    atomic_write_bytes(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))


def _from_recipe(recipe_obj, given: dict, quiet: bool) -> tuple[dict, list[str]]:
    """The build's settings: each command-line value, else the recipe's (the command line wins key by key).

    Returns (settings, overrides): what the flags replaced, also said in one info line."""
    settings = dict(given)
    overrides = []
    if recipe_obj is None:
        return settings, overrides
    build_table = recipe_obj.build or {}
    from_recipe = {"model": recipe_obj.model, "data": recipe_obj.data, "board": recipe_obj.board,
                   "backend": recipe_obj.backend, "output": build_table.get("output"),
                   "runner": build_table.get("runner"), "arena_margin": build_table.get("arena_margin")}
    flags = {"model": "MODEL", "data": "--data", "board": "--board", "backend": "--backend", "output": "-o"}
    for key, value in from_recipe.items():
        if value is None:
            continue
        if settings.get(key) is None:
            settings[key] = value
        elif key in flags and str(settings[key]) != str(value):
            overrides.append(f"{flags[key]} {settings[key]} (recipe: {value})")
    if settings.get("arena_bytes") is not None and settings.get("arena_margin") is not None:
        overrides.append(f"--arena-bytes {settings['arena_bytes']} (recipe: arena_margin {settings['arena_margin']})")
        settings["arena_margin"] = None
    if overrides:
        from edgekit.console import info

        info(f"the command line overrides {recipe_obj.path.name}: {'; '.join(overrides)}", quiet)
    return settings, overrides


def _check_runner(runner: str | None, board) -> None:
    """A recipe's [build] runner must be one the board can be flashed with."""
    if runner is None:
        return
    allowed = board.flash.get("runners") or ([board.default_runner] if board.default_runner else [])
    if runner not in allowed:
        raise UsageError(f"the recipe's [build] runner '{runner}' cannot flash {board.name}; its runners are: "
                         f"{', '.join(allowed) or 'none'}")


def build(model, board_name: str | None = None, out_dir=None, *, backend: str | None = None, data=None,
          recipe=None, arena_bytes: int | None = None, compile: bool = True, flash: bool = False,
          profile: bool = False, runs: int | None = None, port: str | None = None, quiet: bool = False,
          progress=None, tflm_dir=None, tflm_kernels: str | None = None, variant: str | None = None) -> dict:
    """Run the pipeline; returns the report (the --json document). `progress` is a console.progress() bar.

    A board with a [mobile] table (phones, Linux boards) given a float model also gets the LiteRT variants,
    measured, one chosen (or `variant`), and its LiteRT projects (edgekit.variants, edgekit.codegen.litert).

    The output folder is locked for the whole run, and replaced only when the new one is complete (see
    edgekit.fileio.FolderSwap): a failure or an interrupt at any point leaves the previous build as it was."""
    from edgekit.boards import load_board
    from edgekit.codegen.common import safe_file_stem
    from edgekit.fileio import output_lock
    from edgekit.models import model_kind

    recipe_obj = _load_recipe(recipe) if recipe else None
    settings, overrides = _from_recipe(recipe_obj, {
        "model": model, "data": data, "board": board_name, "backend": backend, "output": out_dir,
        "arena_bytes": arena_bytes}, quiet)
    model, data, board_name, backend = settings["model"], settings["data"], settings["board"], settings["backend"]
    if not model:
        raise UsageError("no model given; pass MODEL or a recipe that names one")
    if not board_name:
        raise UsageError("no board given; pass --board NAME (see `edgekit boards`)")
    board = load_board(str(board_name))
    _check_variant_option(variant, board)
    backend = backend or default_backend(board)
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; expected one of: {', '.join(BACKENDS)}")
    tflm_tree = _tflm_tree(board, backend, tflm_dir, tflm_kernels)
    if arena_bytes is not None and arena_bytes <= 0:
        raise UsageError(f"--arena-bytes must be positive, got {arena_bytes}")
    if arena_bytes is not None and backend != "tflm":
        raise UsageError("--arena-bytes applies to the tflm backend only (the native backend's arena is its plan)")
    arena_margin = settings.get("arena_margin")
    if arena_margin is not None and backend != "tflm":
        raise UsageError(f"the recipe's [build] arena_margin applies to the tflm backend only ({board.name} builds "
                         f"with {backend}, whose arena is its exact plan); remove it or use backend = \"tflm\"")
    _check_runner(settings.get("runner"), board)
    model_path = Path(model)
    kind = model_kind(model_path)
    if kind == "tflite" and recipe_obj is not None and recipe_obj.optimize:
        raise UsageError(f"the recipe's [[optimize]] steps need a Keras model; {model_path.name} is a .tflite "
                         "(remove the steps or give the Keras model)")
    source_name = model_path.stem if model_path.is_file() else model_path.name  # the graph's name (see _int8_model)
    out = Path(settings["output"]) if settings.get("output") else Path(
        f"build-{safe_file_stem(source_name)}-{board.name}")
    with output_lock(out):
        result = _build_locked(model_path, board, backend, out, data, recipe_obj, arena_bytes, arena_margin,
                               settings.get("runner"), compile, quiet, progress, flash, profile, runs, port,
                               tflm_tree=tflm_tree, tflm_dir=tflm_dir, variant=variant)
    if recipe_obj is not None:
        result["recipe"] = {"path": str(recipe_obj.path), "overridden_by_flags": overrides}
    return result


def _build_locked(model_path, board, backend, out, data, recipe_obj, arena_bytes, arena_margin, runner, compile,
                  quiet, progress, flash, profile, runs, port, tflm_tree=None, tflm_dir=None,
                  variant=None) -> dict:
    """The pipeline once the output folder is ours."""
    from edgekit.analyze import analyze, require_tflm_loads
    from edgekit.codegen.common import device_model_name, safe_file_stem
    from edgekit.fileio import replacing_output_dir

    stage_names = ["quantize", "analyze", "generate", "compile"] + (["flash"] if flash else []) + (
        ["profile"] if profile else [])
    task = progress.add_task("quantize", total=len(stage_names)) if progress else None

    def advance(next_stage: str) -> None:
        if progress:
            progress.update(task, description=next_stage)
            progress.advance(task)

    stages: list[dict] = []
    source: dict = {}
    optimize_report = None
    if board.data.get("mobile") is not None and _float_source(model_path):
        graph, mobile = _variants_stage(model_path, data, board, variant, recipe_obj, stages, advance, source)
    else:
        mobile = None
        if variant not in (None, "int8"):
            raise UsageError(f"--variant {variant} is made from a float model; {model_path.name} is already int8 "
                             "(give the Keras model or the float .tflite)")
        graph, optimize_report = _int8_model(model_path, data, recipe_obj, quiet, stages, advance, source)

    _check_pair(graph, board, backend)
    started = time.monotonic()
    report = analyze(graph, board, backend, keras_names=source.get("keras_names"))
    require_tflm_loads(report)
    placement = check_fit(graph, board, backend, report)
    if backend == "tflm":
        placement = check_tflm_arena(graph, board, arena_bytes, placement, arena_margin,
                                     tflm_tree.kernels if tflm_tree else None)
    stages.append({"stage": "analyze", "seconds": round(time.monotonic() - started, 2), "fits": True,
                   "ram_bytes": report["ram_bytes"], "flash_bytes": report["flash_bytes"]})
    advance("generate")

    model_file = f"{safe_file_stem(graph.name)}.tflite"
    # The device reports this name (ek-info); `profile` compares it with the manifest's: the same string.
    device_name = device_model_name(graph.name)
    started = time.monotonic()
    manifest = {
        "board": board.name, "backend": backend, "model": model_file, "model_sha256": graph.sha256,
        "model_name": device_name, "ops": graph.opcodes, "num_layers": len(graph.operators),
        "arena_bytes": None, "sizes": None, "firmware": None, "runner": runner or board.default_runner,
        "input": _tensor(graph.input_tensors()[0]), "output": _tensor(graph.output_tensors()[0]),
        "macs": report.get("macs"), "project": None,
        "layer_names": [row["layer"] for row in report["layers"]],
        "device_layers": list(range(len(graph.operators))),  # TFLite Micro runs every operator; native: below
    }
    if source.get("float_bytes"):
        manifest["float_model"] = f"{safe_file_stem(graph.name)}_float.tflite"
    project = None
    compiled = None
    with replacing_output_dir(out, MANIFEST) as swap:
        staging = swap.begin()
        from edgekit.project import write_project

        options = {"name": device_name} if backend == "native" else {"arena_bytes": arena_bytes,
                                                                      "arena_margin": arena_margin}
        project = write_project(graph, board, backend, staging, ram_budget=placement["internal_ram_budget"],
                                kernels=tflm_tree.kernels if tflm_tree else None, **options)
        output = project.backend
        manifest.update(arena_bytes=output.arena_bytes, project=project.family, **output.manifest)
        if project.build_hint:
            manifest.update(build_hint=project.build_hint, expected_firmware=project.expected_firmware,
                            **{f"expected_{key}": value for key, value in project.extra.items()})
        (staging / model_file).write_bytes(graph.model_bytes)
        if manifest.get("float_model"):  # the baseline of `profile --validate-layers` against the float model
            (staging / manifest["float_model"]).write_bytes(source["float_bytes"])
        _write_report_data(staging, report, source, optimize_report, stages)
        if board.data.get("mobile") is not None:
            manifest["mobile"] = _write_mobile(staging, board, graph, mobile, out)
        stages.append({"stage": "generate", "seconds": round(time.monotonic() - started, 2), "folder": str(out)})
        advance("compile")

        # Compiling happens in the final folder (build systems such as CMake and ESP-IDF record absolute paths),
        # with the previous build set aside until the manifest, written last, says this one is complete.
        swap.move_into_place()
        started = time.monotonic()
        if compile:
            compiled = _compile(out, board, backend, project, manifest, tflm_tree, tflm_dir)
            stages.append({"stage": "compile", "seconds": round(time.monotonic() - started, 2), **compiled})
        else:
            stages.append({"stage": "compile", "skipped": "--no-compile"})
        if (flash or profile) and not manifest.get("firmware"):  # refused before the folder is kept: no output
            raise EdgekitError(f"cannot {'flash' if flash else 'profile'}: the project was not compiled "
                               f"({compiled.get('skipped') if compiled else 'no compile'}); build without "
                               f"--{'flash' if flash else 'profile'} to get the project")
        _write_manifest(out, manifest)
        swap.commit()
    advance("flash" if flash else "profile")
    result = {"folder": str(out), "manifest": manifest, "analysis": {
        "fits": report["fits"], "ram": report["ram"], "flash": report["flash"], "macs": report["macs"],
        "params": report["params"]}, "stages": stages, "flash": None, "profile": None}
    if flash:
        from edgekit.flash import flash_build

        result["flash"] = flash_build(out, port=port)
        advance("profile")
    if profile:
        from edgekit.profile import profile_build

        result["profile"] = profile_build(out, runs=runs, data=data, port=port)
        from edgekit.report import write_report

        result["report"] = str(write_report(out))
        advance("done")
    return result




def _write_report_data(folder: Path, analysis: dict, source: dict, optimize_report, stages: list) -> None:
    """What `edgekit report` shows beyond the manifest and the device: the analysis (fit, memory plan, per-layer
    MACs), the quantize report (accuracy, per-layer error) and the optimize steps."""
    from edgekit.build_folder import json_safe
    from edgekit.fileio import atomic_write_bytes

    data = {"analysis": analysis, "quantize": source.get("quantize_report"),
            "optimize": _optimize_for_report(optimize_report), "stages": stages}
    atomic_write_bytes(folder / REPORT_DATA, (json.dumps(json_safe(data), indent=1) + "\n").encode("utf-8"))


def _optimize_for_report(report) -> dict | None:
    if not report:
        return None
    return {"before": _without_bytes(report["before"]), "after": _without_bytes(report["after"]),
            "steps": [{k: (_without_bytes(v) if k in ("before", "after") and isinstance(v, dict) else v)
                       for k, v in step.items()} for step in report["steps"]]}


def _tflm_tree(board, backend: str, tflm_dir, tflm_kernels):
    """The TFLite Micro tree a platform that compiles its libraries itself (host, qemu) builds against (None:
    generate only); checked before any work."""
    from edgekit.platforms import platform_for

    if backend != "tflm":
        if tflm_dir or tflm_kernels:
            raise UsageError(f"--tflm-dir and --tflm-kernels apply to the tflm backend; this build uses {backend}")
        return None
    if not platform_for(board).compiles_libraries:
        if tflm_kernels:
            raise UsageError(f"--tflm-kernels applies to host and QEMU boards; {board.name}'s {board.project} "
                             "project takes the kernels of the tree it is built with")
        if tflm_dir:
            from edgekit.tflm_library import find_tree

            find_tree(tflm_dir)  # a wrong path fails now, in one line
        return None
    from edgekit.tflm_library import find_tree

    return find_tree(tflm_dir, tflm_kernels)


def _compile(out: Path, board, backend: str, project, manifest: dict, tflm_tree=None, tflm_dir=None) -> dict:
    """Compile when the platform's toolchain is here; otherwise say in one line how to build."""
    import os

    from edgekit.platforms import platform_for

    platform = platform_for(board)
    tree = tflm_tree.path if tflm_tree else tflm_dir
    env = {**os.environ, "TFLM_DIR": str(tree)} if tree else None
    toolchain = platform.toolchain(board, project.backend, env)
    if not toolchain.found:
        if not project.build_hint:
            return {"skipped": toolchain.missing}
        return {"skipped": f"{toolchain.missing}; to build by hand: {project.build_hint} (in {out})"}
    done = platform.compile(out, board, project, toolchain)
    manifest.update(firmware=done.firmware, sizes=done.sizes, **done.manifest)
    if not project.build_hint:  # edgekit's own compile: no build-tool log to point to
        return {"firmware": done.firmware, "sizes": done.sizes, **done.manifest}
    return {"firmware": done.firmware, "sizes": done.sizes, "log": done.log, **done.manifest}


def _check_pair(graph, board, backend: str) -> None:
    """Refuse a pair that one side cannot build, naming a route that works (edgekit.routes)."""
    from edgekit.project import check_pair
    from edgekit.routes import refusal

    verdict = check_pair(graph, board, backend)
    if not verdict:
        raise UsageError(refusal(graph, board, backend, verdict.reason))


# -- phones and Linux boards: LiteRT variants and projects ---------------------------------------------------


def _check_variant_option(variant, board) -> None:
    from edgekit.variants import check_variant

    check_variant(variant)
    if variant is not None and board.data.get("mobile") is None:
        from edgekit.boards import all_boards

        mobile = [b.name for b in all_boards().values() if b.data.get("mobile") is not None]
        raise UsageError(f"--variant chooses among LiteRT variants, made for boards with a [mobile] table "
                         f"({', '.join(mobile)}); {board.name} runs the int8 model")


def _float_source(model_path: Path) -> bool:
    """A model the variants are made from: Keras/SavedModel, or a .tflite with float activations."""
    from edgekit.models import model_kind

    if model_kind(model_path) != "tflite":
        return True
    from edgekit.tflite_model import load_tflite

    graph = load_tflite(model_path)
    from edgekit.quantize import float_io_boundary

    return not graph.is_fully_int8 and float_io_boundary(graph) is None and not any(
        t.dtype == "int8" for t in graph.tensors if t.data is not None)


def _variants_stage(model_path, data, board, variant, recipe, stages, advance, source: dict):
    """Every LiteRT variant, measured; the int8 one is the graph the native backend builds."""
    from edgekit.tflite_model import parse_tflite
    from edgekit.variants import choose, make_all

    if recipe is not None and recipe.optimize:
        raise UsageError(f"{board.name} builds the LiteRT variants of the model as given; run the recipe's "
                         "[[optimize]] steps with edgekit optimize first, then build the optimized model")
    options = dict(getattr(recipe, "quantize", None) or {}) if recipe else {}
    started = time.monotonic()
    made, measured_on, not_made = make_all(model_path, data, quiet=True, **{
        k: options[k] for k in ("calibration_samples", "eval_samples") if k in options})
    int8 = next((v for v in made if v.name == "int8"), None)
    if int8 is None:
        raise EdgekitError(f"the int8 variant of {model_path.name} could not be made: "
                           f"{next((n for n in not_made if n.startswith('int8:')), 'unknown reason')}")
    chosen, rule = choose(made, board, variant)
    quantized = int8.quantize_result  # edgekit quantize's own result: what `edgekit report` and profile read
    source.update(float_bytes=quantized.float_bytes, keras_names=quantized.keras_names,
                  quantize_report=quantized.report)
    name = model_path.stem if model_path.is_file() else model_path.name
    stages.append({"stage": "variants", "seconds": round(time.monotonic() - started, 2), "chosen": chosen.name,
                   "rule": rule, "inputs": measured_on.inputs, "not_made": not_made,
                   "host": _host_cpu(), "variants": [v.row() for v in made]})
    advance("analyze")
    return parse_tflite(int8.tflite_bytes, name=name), {"made": made, "chosen": chosen, "rule": rule,
                                                         "not_made": not_made, "inputs": measured_on.inputs}


def _host_cpu() -> str:
    """What the host latencies were measured on (they are this computer's, not the board's)."""
    import os
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.machine()}, {os.cpu_count()} CPUs (this computer, not the board)"


def _write_mobile(staging: Path, board, graph, mobile, out: Path) -> dict:
    """variants/*.tflite and the board's LiteRT projects, around the chosen variant; the manifest's record."""
    from edgekit.codegen.common import safe_file_stem
    from edgekit.codegen.litert import write_projects
    from edgekit.tflite_model import parse_tflite

    stem = safe_file_stem(graph.name)
    if mobile is None:  # an int8 model was given: it is the only variant
        rule = "the model was given already int8: the only variant"
        projects = write_projects(staging, board, graph, "int8", rule, str(out))
        return {"chosen": "int8", "chosen_file": None, "rule": rule, "variants": [], "projects": projects}
    files = {}
    (staging / "variants").mkdir(exist_ok=True)
    for variant in mobile["made"]:
        files[variant.name] = f"variants/{stem}_{variant.name}.tflite"
        (staging / files[variant.name]).write_bytes(variant.tflite_bytes)
    chosen = mobile["chosen"]
    chosen_graph = parse_tflite(chosen.tflite_bytes, name=graph.name)
    projects = write_projects(staging, board, chosen_graph, chosen.name, mobile["rule"], str(out))
    rows = [dict(v.row(), file=files[v.name]) for v in mobile["made"]]
    return {"chosen": chosen.name, "chosen_file": files[chosen.name], "rule": mobile["rule"],
            "inputs": mobile["inputs"], "variants": rows, "not_made": mobile["not_made"], "projects": projects}
