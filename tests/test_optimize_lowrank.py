"""Low-rank factorization and distillation on models built here and on the digits CNN."""

import numpy as np
import pytest

from edgekit.data import Dataset
from edgekit.optimize import run_recipe
from edgekit.optimize.lowrank import low_rank, rank_for_energy
from edgekit.optimize.metrics import model_macs, model_params


def test_rank_for_energy():
    s = np.array([3.0, 2.0, 1.0, 0.0])
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.9) == 2
    assert rank_for_energy(s, 1.0) == 3


def _rank4_model():
    """A Dense 64->48 and a strided 1x1 Conv2D 16->24 whose kernels have rank 4: factorization is exact."""
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((6, 6, 16))
    x = keras.layers.Conv2D(24, 1, strides=2, activation="relu", name="pw")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, name="wide")(x)
    outputs = keras.layers.Dense(48, activation="tanh", name="low")(x)
    model = keras.Model(inputs, outputs)
    low = model.get_layer("low")
    low.set_weights([(rng.normal(size=(64, 4)) @ rng.normal(size=(4, 48))).astype("float32"),
                     rng.normal(size=48).astype("float32")])
    pw = model.get_layer("pw")
    kernel = (rng.normal(size=(16, 4)) @ rng.normal(size=(4, 24))).astype("float32").reshape(1, 1, 16, 24)
    pw.set_weights([kernel, pw.get_weights()[1]])
    return model


def test_exact_low_rank_layers_are_factorized_without_changing_outputs():
    model = _rank4_model()
    factored, rows = low_rank(model, energy=0.999999)
    by_name = {r["layer"]: r for r in rows}
    assert by_name["low"]["rank"] == 4 and by_name["low"]["factorized"]
    assert by_name["pw"]["rank"] == 4 and by_name["pw"]["factorized"]
    assert model_macs(factored) < model_macs(model)
    assert model_params(factored) < model_params(model)
    x = np.random.default_rng(1).random((8, 6, 6, 16)).astype("float32")
    np.testing.assert_allclose(factored.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    assert factored.get_layer("pw_lowrank").strides == (2, 2)


def test_full_rank_layers_stay_when_factorizing_would_not_pay():
    model = _rank4_model()
    _, rows = low_rank(model, energy=1.0)
    assert not {r["layer"]: r for r in rows}["wide"]["factorized"]  # 864 -> 64 at full rank costs more


@pytest.mark.slow
def test_digits_low_rank_lowers_params_and_distillation_reports_student(digits_cnn):
    data = Dataset(digits_cnn["x_train"], digits_cnn["y_train"], digits_cnn["x_test"], digits_cnn["y_test"])
    model = digits_cnn["model"]
    steps = [{"technique": "lowrank", "energy": 0.8, "epochs": 0},
             {"technique": "distill", "temperature": 4.0, "alpha": 0.9, "epochs": 3}]
    student, report = run_recipe(model, data, steps, quiet=True, int8=False)
    lowrank, distill = report["steps"]
    assert lowrank["after"]["params"] < lowrank["before"]["params"]
    assert any(r["factorized"] for r in lowrank["details"]["layers"])
    assert distill["details"]["teacher_params"] == model_params(model)
    assert distill["after"]["params"] == model_params(student) < model_params(model)
    # distillation recovers what the truncation lost
    assert distill["after"]["value"] >= lowrank["after"]["value"]
    assert distill["after"]["value"] >= report["before"]["value"] - 0.03


@pytest.mark.slow
def test_distillation_from_a_teacher_file_into_a_small_student(digits_cnn, tmp_path):
    import keras

    from tests.digits import build_digits_cnn

    keras.utils.set_random_seed(3)
    student = build_digits_cnn(width=4)  # untrained: everything it knows comes from the teacher
    data = Dataset(digits_cnn["x_train"], None, digits_cnn["x_test"], None)  # no labels at all
    steps = [{"technique": "distill", "teacher": str(digits_cnn["keras_path"]), "temperature": 2.0,
              "epochs": 6, "lr": 3e-3}]
    trained, report = run_recipe(student, data, steps, quiet=True, int8=False)
    after = report["after"]
    assert after["metric"] == "agreement"
    teacher_labels = np.argmax(digits_cnn["model"].predict(digits_cnn["x_test"], verbose=0), axis=1)
    agreement = np.mean(np.argmax(trained.predict(digits_cnn["x_test"], verbose=0), axis=1) == teacher_labels)
    assert agreement > 0.8
    assert report["steps"][0]["details"]["teacher_params"] > 4 * after["params"]
