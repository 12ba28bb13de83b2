"""The edgekit.toml recipe: the documented example, path resolution, and one-line errors naming the key."""

from pathlib import Path

import pytest

from edgekit.errors import EdgekitError
from edgekit.optimize import steps_from_flags, validate_step
from edgekit.recipe import load_recipe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "edgekit.toml"


def test_the_documented_example_reads():
    recipe = load_recipe(EXAMPLE)
    assert recipe.model == (EXAMPLE.parent / "digits_cnn.keras").resolve()
    assert recipe.data == (EXAMPLE.parent / "digits.npz").resolve()
    assert (recipe.board, recipe.backend) == ("mps2-an386", "native")
    assert recipe.optimize == [{"technique": "structured", "ratio": 0.5, "criterion": "auto", "epochs": 10,
                                "lr": 1e-3}]
    assert recipe.quantize == {"calibration_samples": 200}
    assert recipe.build == {"runner": "qemu"}
    assert load_recipe(EXAMPLE.parent).path == EXAMPLE  # a folder means its edgekit.toml


def test_paths_resolve_against_the_recipe_folder(tmp_path):
    (tmp_path / "proj").mkdir()
    recipe_file = tmp_path / "proj" / "edgekit.toml"
    recipe_file.write_text('model = "../models/m.keras"\n[[optimize]]\ntechnique = "distill"\nteacher = "t.keras"\n')
    recipe = load_recipe(recipe_file)
    assert recipe.model == (tmp_path / "models" / "m.keras").resolve()
    assert recipe.optimize[0]["teacher"] == str((tmp_path / "proj" / "t.keras").resolve())
    assert recipe.backend is None and recipe.board is None and recipe.data is None  # None: the board's default


@pytest.mark.parametrize("text, message", [
    ('modle = "m.keras"', "unknown key 'modle'"),
    ('model = 3', "'model' must be a file path"),
    ('backend = "cmsis"', "'backend' must be one of native, tflm"),
    ('board = "stm32-imaginary"', "'board' must be one of"),
    ('[[optimize]]\ntechnique = "prune"', "'technique' must be one of"),
    ('[[optimize]]\ntechnique = "structured"', "key 'ratio' is required"),
    ('[[optimize]]\ntechnique = "structured"\nratio = 1.5', "key 'ratio' must be a number in [0, 1)"),
    ('[[optimize]]\ntechnique = "magnitude"\nsparsity = 0.5\nschedule = "cubic"',
     "key 'schedule' must be 'constant' or 'polynomial'"),
    ('[[optimize]]\ntechnique = "lowrank"\nenergy = 0.9\nlr = "fast"', "key 'lr' must be a number > 0 or \"auto\""),
    ('[[optimize]]\ntechnique = "lowrank"\nepochs = -1', "key 'epochs' must be an integer >= 0"),
    ('[[optimize]]\ntechnique = "lowrank"\nrank = 4', "unknown key 'rank'"),
    ('[quantize]\ncalibration_samples = 0', "'calibration_samples' must be an integer > 0"),
    ('[build]\narena = 2', "unknown key 'arena' in [build]"),
    ('model = "m.keras"\nmodel = "n.keras"', "not valid TOML"),
])
def test_invalid_recipes_name_the_key(tmp_path, text, message):
    path = tmp_path / "edgekit.toml"
    path.write_text(text + "\n")
    with pytest.raises(EdgekitError) as error:
        load_recipe(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(EdgekitError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")


def test_validate_step_fills_defaults():
    step = validate_step({"technique": "magnitude", "sparsity": 0.8})
    assert step["schedule"] == "polynomial" and step["scope"] == "layer" and step["lr"] == 3e-3
    assert step["epochs"] is None  # the technique's default, decided when the data is known


def test_flags_become_steps_in_a_sensible_order():
    steps = steps_from_flags(prune=0.8, structured=0.5, rank_energy=0.9, distill=True,
                             training={"epochs": 3, "lr": "auto", "clipnorm": None})
    assert [s["technique"] for s in steps] == ["structured", "lowrank", "distill", "magnitude"]
    # distillation is the recovery: the structural steps do not fine-tune on their own
    assert steps[0]["epochs"] == 0 and steps[1]["epochs"] == 0 and steps[2]["epochs"] == 3
    assert "clipnorm" not in steps[3] and steps[3]["lr"] == "auto"
    assert steps_from_flags(training={"epochs": 2}) == [{"technique": "finetune", "epochs": 2}]
    assert steps_from_flags() == []
