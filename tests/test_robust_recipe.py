"""Recipes under hostile input, and every [build] key either used or refused; the command line against the recipe."""

import json
import math

import pytest

from edgekit.build import build
from edgekit.cli import main
from edgekit.errors import EdgekitError, UsageError
from edgekit.optimize import steps_from_flags, steps_with_flags
from edgekit.recipe import load_recipe


def _recipe(tmp_path, text: str):
    path = tmp_path / "edgekit.toml"
    path.write_text(text)
    return path


def _run(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.mark.parametrize("depth", [2_000, 200_000])
def test_deep_nesting_is_one_line(tmp_path, capsys, depth):
    path = _recipe(tmp_path, "model = " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(EdgekitError, match="nests arrays or tables too deeply"):
        load_recipe(path)
    code, _, err = _run(["build", "--recipe", str(path), "--board", "host"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "11.0", "-0.5", "1e308", "true", '"0.1"'])
def test_absurd_arena_margins_are_refused(tmp_path, value):
    with pytest.raises(EdgekitError, match=r"\[build\] 'arena_margin' must be a number from 0 to 10"):
        load_recipe(_recipe(tmp_path, f"[build]\narena_margin = {value}\n"))


def test_arena_margin_sets_the_tflm_margin(int8_model_path, tmp_path):
    model = int8_model_path("kws")
    default = build(model, "nrf52840dk", tmp_path / "default", compile=False, quiet=True)["manifest"]["arena"]
    recipe = _recipe(tmp_path, f'model = "{model.as_posix()}"\nboard = "nrf52840dk"\n[build]\narena_margin = 0.5\n')
    wide = build(None, recipe=recipe, out_dir=tmp_path / "wide", compile=False, quiet=True)["manifest"]["arena"]
    base = default["target_bytes"] + default["scratch_bytes"]
    assert default["margin_bytes"] == math.ceil(base * 0.1) + 1024
    assert wide["margin_bytes"] == math.ceil(base * 0.5) + 1024 and wide["margin_fraction"] == 0.5
    assert wide["bytes"] > default["bytes"]
    settings = next((tmp_path / "wide").rglob("model_settings.h")).read_text()
    assert "margin: 50% of the above" in settings and f"{wide['bytes']}" in settings


def test_arena_margin_with_the_native_backend_is_refused(int8_model_path, tmp_path):
    recipe = _recipe(tmp_path, f'model = "{int8_model_path("ad").as_posix()}"\nboard = "host"\n'
                               "[build]\narena_margin = 0.2\n")
    with pytest.raises(UsageError, match="arena_margin applies to the tflm backend only"):
        build(None, recipe=recipe, compile=False, quiet=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("build")]


def test_output_is_the_default_folder_and_the_flag_overrides_it(int8_model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj").mkdir()
    recipe = _recipe(tmp_path / "proj", f'model = "{int8_model_path("ad").as_posix()}"\nboard = "host"\n'
                                        '[build]\noutput = "firmware-out"\n')
    result = build(None, recipe=recipe, compile=False, quiet=True)
    assert result["folder"] == str(tmp_path / "proj" / "firmware-out")  # relative to the recipe, like model
    assert (tmp_path / "proj" / "firmware-out" / "edgekit-build.json").is_file()
    code, out, err = _run(["build", "--recipe", str(recipe), "-o", "elsewhere", "--no-compile", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["recipe"]["overridden_by_flags"] == [
        f"-o elsewhere (recipe: {tmp_path / 'proj' / 'firmware-out'})"]
    assert "the command line overrides edgekit.toml: -o elsewhere" not in err  # --json: stdout only
    code, out, err = _run(["build", "--recipe", str(recipe), "-o", "elsewhere", "--no-compile"], capsys)
    assert code == 0 and "the command line overrides edgekit.toml: -o elsewhere (recipe:" in err
    assert (tmp_path / "elsewhere" / "edgekit-build.json").is_file()


def test_runner_goes_to_the_manifest_and_must_be_the_boards(int8_model_path, tmp_path):
    model = int8_model_path("ad").as_posix()
    recipe = _recipe(tmp_path, f'model = "{model}"\nboard = "nrf52840dk"\n[build]\nrunner = "openocd"\n')
    result = build(None, recipe=recipe, out_dir=tmp_path / "b", compile=False, quiet=True)
    assert result["manifest"]["runner"] == "openocd"
    assert json.loads((tmp_path / "b" / "edgekit-build.json").read_text())["runner"] == "openocd"
    recipe = _recipe(tmp_path, f'model = "{model}"\nboard = "nrf52840dk"\n[build]\nrunner = "esptool"\n')
    with pytest.raises(UsageError, match="runner 'esptool' cannot flash nrf52840dk; its runners are: pyocd, openocd"):
        build(None, recipe=recipe, out_dir=tmp_path / "c", compile=False, quiet=True)
    assert not (tmp_path / "c").exists()


def test_optimize_steps_for_a_tflite_are_refused(int8_model_path, tmp_path):
    recipe = _recipe(tmp_path, f'model = "{int8_model_path("ad").as_posix()}"\nboard = "host"\n'
                               '[[optimize]]\ntechnique = "structured"\nratio = 0.5\n')
    with pytest.raises(UsageError, match=r"the recipe's \[\[optimize\]\] steps need a Keras model; "
                                         r"ad01_int8.tflite is a .tflite"):
        build(None, recipe=recipe, out_dir=tmp_path / "b", compile=False, quiet=True)
    assert not (tmp_path / "b").exists()


def test_a_recipe_without_backend_takes_the_boards_default(int8_model_path, tmp_path):
    recipe = _recipe(tmp_path, f'model = "{int8_model_path("ad").as_posix()}"\nboard = "host"\n')
    assert load_recipe(recipe).backend is None
    result = build(None, recipe=recipe, out_dir=tmp_path / "b", compile=False, quiet=True)
    assert result["manifest"]["backend"] == "native"


@pytest.mark.parametrize("content, suffix", [(b"root:x:0:0:root:/root:/bin/bash\n", ".txt"),
                                             (b"not a model", ".keras"), (b"\0" * 64, "")])
def test_a_file_that_is_not_a_model_is_said_so(tmp_path, digits, content, suffix):
    import numpy as np

    x_train, y_train, _, _ = digits
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x_train[:20], y_train=y_train[:20])
    path = tmp_path / f"passwd{suffix}"
    path.write_bytes(content)
    recipe = _recipe(tmp_path, f'model = "{path.as_posix()}"\nboard = "host"\n')
    for data_arg in (None, data):
        with pytest.raises(EdgekitError, match="is not a (model file|valid .keras file)") as error:
            build(None, recipe=recipe, data=data_arg, out_dir=tmp_path / "b", compile=False, quiet=True)
        assert "pass --data" not in str(error.value)
    assert not (tmp_path / "b").exists()


def test_a_folder_that_is_not_a_savedmodel_is_said_so(tmp_path):
    with pytest.raises(EdgekitError, match="is a folder but not a SavedModel"):
        build(tmp_path, "host", tmp_path / "b", compile=False, quiet=True)


RECIPE_STEPS = [{"technique": "structured", "ratio": 0.5, "epochs": 10},
                {"technique": "magnitude", "sparsity": 0.8, "schedule": "polynomial"}]


def test_training_flags_override_keys_of_every_recipe_step():
    flags = steps_from_flags(training={"epochs": 2, "lr": None})
    steps, note = steps_with_flags(RECIPE_STEPS, flags, {"epochs": 2, "lr": None}, {}, technique_given=False)
    assert [s["technique"] for s in steps] == ["structured", "magnitude"]  # not a lone fine-tuning step
    assert steps[0] == {"technique": "structured", "ratio": 0.5, "epochs": 2}
    assert steps[1]["sparsity"] == 0.8 and steps[1]["epochs"] == 2
    assert note == ("the command line overrides the recipe's [[optimize]] steps: step 1 (structured): epochs=2; "
                    "step 2 (magnitude): epochs=2")
    assert RECIPE_STEPS[0]["epochs"] == 10  # the recipe itself is untouched


def test_technique_settings_go_to_their_steps_or_are_refused():
    steps, note = steps_with_flags(RECIPE_STEPS, [], {}, {"magnitude": {"schedule": "constant"}}, False)
    assert steps[1]["schedule"] == "constant" and "schedule" not in steps[0]
    assert note.endswith("step 2 (magnitude): schedule=constant")
    with pytest.raises(EdgekitError, match="--temperature set distill steps, and the recipe's"):
        steps_with_flags(RECIPE_STEPS, [], {}, {"distill": {"temperature": 2.0}}, False)


def test_technique_flags_replace_the_recipe_steps_and_say_so():
    flags = steps_from_flags(prune=0.9)
    steps, note = steps_with_flags(RECIPE_STEPS, flags, {}, {}, technique_given=True)
    assert steps == flags
    assert note == ("the command line's steps (magnitude sparsity=0.9) replace the recipe's [[optimize]] steps "
                    "(structured ratio=0.5, magnitude sparsity=0.8)")


@pytest.mark.slow
def test_epochs_flag_keeps_the_recipes_structured_and_magnitude_steps(digits_cnn, tmp_path, capsys):
    recipe = _recipe(tmp_path, f'model = "{digits_cnn["keras_path"].as_posix()}"\n'
                               f'data = "{digits_cnn["npz_path"].as_posix()}"\n'
                               '[[optimize]]\ntechnique = "structured"\nratio = 0.5\nepochs = 5\n'
                               '[[optimize]]\ntechnique = "magnitude"\nsparsity = 0.6\nschedule = "constant"\n')
    code, out, err = _run(["optimize", "--recipe", str(recipe), "--epochs", "0", "--no-int8",
                           "-o", str(tmp_path / "small.keras")], capsys)
    assert code == 0, err
    assert "the command line overrides the recipe's [[optimize]] steps: step 1 (structured): epochs=0; step 2 " \
           "(magnitude): epochs=0" in " ".join(err.split())
    code, out, _ = _run(["optimize", "--recipe", str(recipe), "--epochs", "0", "--no-int8", "--json",
                         "-o", str(tmp_path / "small.keras")], capsys)
    report = json.loads(out)
    assert [(s["technique"], s["settings"]["epochs"]) for s in report["steps"]] == [("structured", 0),
                                                                                   ("magnitude", 0)]
    assert report["after"]["macs"] < 0.6 * report["before"]["macs"]  # the structured step did run
    sparsity = [r["sparsity"] for r in report["steps"][1]["details"]["layers"]]
    assert min(sparsity) > 0.55  # and so did the magnitude step
