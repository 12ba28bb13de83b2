"""`edgekit optimize` end to end: JSON report, the written .keras, the PNG, recipes, and one-line errors."""

import json

import pytest

from edgekit.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.mark.slow
def test_structured_from_the_command_line(digits_cnn, tmp_path, capsys):
    import keras

    out_model = tmp_path / "small.keras"
    plot = tmp_path / "steps.png"
    code, out, err = _run([
        "optimize", str(digits_cnn["keras_path"]), "--data", str(digits_cnn["npz_path"]), "--structured", "0.5",
        "--epochs", "1", "--no-int8", "-o", str(out_model), "--plot", str(plot), "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    step = report["steps"][0]
    assert step["technique"] == "structured" and step["settings"]["epochs"] == 1
    assert report["after"]["macs"] < 0.6 * report["before"]["macs"]
    assert report["after"]["metric"] == "accuracy"
    saved = keras.models.load_model(out_model)
    assert saved.count_params() == report["after"]["params"]
    x = digits_cnn["x_test"][:5]
    assert saved.predict(x, verbose=0).shape == (5, 10)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.slow
def test_recipe_from_the_command_line_without_data_runs_data_free_steps(digits_cnn, tmp_path, capsys):
    recipe = tmp_path / "edgekit.toml"
    recipe.write_text(f'model = "{digits_cnn["keras_path"].as_posix()}"\n'
                      '[[optimize]]\ntechnique = "structured"\nratio = 0.25\n'
                      '[[optimize]]\ntechnique = "lowrank"\nenergy = 0.8\n')
    out_model = tmp_path / "out.keras"
    code, out, err = _run(["optimize", str(recipe), "-o", str(out_model), "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert [s["technique"] for s in report["steps"]] == ["structured", "lowrank"]
    assert all(s["settings"]["epochs"] == 0 for s in report["steps"])  # nothing to fine-tune on
    assert report["after"]["params"] < report["before"]["params"]
    assert out_model.exists()


def test_a_step_that_needs_data_says_so(digits_cnn, tmp_path, capsys):
    out_model = tmp_path / "out.keras"
    code, out, err = _run(["optimize", str(digits_cnn["keras_path"]), "--prune", "0.8", "-o", str(out_model)],
                          capsys)
    assert code == 1
    assert err.startswith("error: optimize step 1 (magnitude) needs training data") and err.count("\n") == 1
    assert not out_model.exists() and out == ""


@pytest.mark.parametrize("args, code, message", [
    (["--structured", "0.5", "-o", "out.h5"], 1, "must end in .keras"),
    ([], 2, "nothing to do"),
    (["--structured", "1.5"], 1, "key 'ratio' must be a number in [0, 1)"),
    (["--lr", "fast", "--epochs", "1"], 2, "is not a learning rate"),
])
def test_bad_options_are_one_line_errors(digits_cnn, tmp_path, capsys, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    got, out, err = _run(["optimize", str(digits_cnn["keras_path"]), *args], capsys)
    assert got == code
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_model_file(tmp_path, capsys):
    code, _, err = _run(["optimize", str(tmp_path / "none.keras"), "--structured", "0.5"], capsys)
    assert code == 1 and "not found" in err


def test_help_lists_every_technique(capsys):
    code, out, _ = _run(["optimize", "--help"], capsys)
    assert code == 0
    for flag in ("--prune", "--prune-schedule", "--prune-scope", "--structured", "--rank-energy", "--distill-from",
                 "--temperature", "--alpha", "--epochs", "--lr", "--clipnorm", "--l1", "--recipe", "--json"):
        assert flag in out
