"""Fine-tuning controls: the learning-rate sweep, L1, clipping, and fine-tuning without labels."""

import numpy as np
import pytest

from edgekit.data import Dataset
from edgekit.optimize import run_recipe
from edgekit.optimize.finetune import LR_SWEEP, TrainSettings, fine_tune


def _blobs(seed=0, n=600):
    """Three Gaussian blobs in 8 dimensions: a real, learnable classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(3, 8))
    y = rng.integers(0, 3, size=n)
    x = (centers[y] + rng.normal(size=(n, 8))).astype("float32")
    return Dataset(x[:480], y[:480], x[480:], y[480:])


def _mlp(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


def test_lr_auto_keeps_the_best_of_the_sweep():
    data = _blobs()
    model = _mlp()
    summary = fine_tune(model, data, TrainSettings(epochs=2, lr="auto", clipnorm=1.0), quiet=True)
    assert [s["lr"] for s in summary["sweep"]] == list(LR_SWEEP)
    best = min(summary["sweep"], key=lambda s: s["val_loss"])
    assert summary["lr"] == best["lr"] and summary["final_loss"] == best["val_loss"]
    accuracy = np.mean(np.argmax(model.predict(data.x_test, verbose=0), axis=1) == data.y_test)
    assert accuracy > 0.9


def test_l1_drives_weights_toward_zero():
    data = _blobs()
    plain, sparse = _mlp(), _mlp()
    fine_tune(plain, data, TrainSettings(epochs=4, lr=3e-3), quiet=True)
    fine_tune(sparse, data, TrainSettings(epochs=4, lr=3e-3, l1=3e-3), quiet=True)
    small = [np.mean(np.abs(m.layers[0].get_weights()[0]) < 1e-2) for m in (plain, sparse)]
    assert small[1] > small[0]
    # the penalty is for training only: nothing of it stays in the model
    assert sparse.layers[0].kernel.regularizer is None


def test_gradient_clipping_is_applied():
    data = _blobs()
    batch = Dataset(data.x_train[:32], data.y_train[:32], data.x_test, data.y_test)

    def largest_move(**clip):
        model = _mlp()
        start = model.get_weights()
        fine_tune(model, batch, TrainSettings(epochs=1, lr=0.1, batch_size=32, **clip), quiet=True)
        return max(np.abs(a - b).max() for a, b in zip(model.get_weights(), start))

    # Adam moves a weight by about lr; with gradients clipped far below Adam's epsilon it barely moves
    assert largest_move() > 0.05
    assert largest_move(clipvalue=1e-12) < 1e-3
    assert largest_move(clipnorm=1e-12) < 1e-3


@pytest.mark.slow
def test_structured_fine_tunes_without_labels_by_agreement(digits_cnn):
    data = Dataset(digits_cnn["x_train"], None, digits_cnn["x_test"], None)
    steps = [{"technique": "structured", "ratio": 0.5, "epochs": 3}]
    _, report = run_recipe(digits_cnn["model"], data, steps, quiet=True, int8=False)
    step = report["steps"][0]
    assert step["after"]["metric"] == "agreement" and report["before"]["value"] == 1.0
    training = step["details"]["training"]
    # without labels the goal is top-1 agreement with the model before the step (100 %), within 0.5 points
    assert training["metric"] == "agreement" and training["target"] == 100.0
    assert 3 <= training["epochs"] <= training["max_epochs"] == 15
    assert training["recovered"] == (training["score"] >= 99.5)
    assert step["after"]["value"] > 0.95


def test_training_goes_on_past_the_requested_epochs_until_recovered():
    """One requested epoch at a small learning rate cannot recover; the tool keeps going and keeps the best."""
    import keras

    data = _blobs(seed=2)
    teacher = _mlp(seed=3)
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    teacher.fit(data.x_train, data.y_train, epochs=20, verbose=0)
    student = _mlp(seed=4)
    summary = fine_tune(student, data, TrainSettings(epochs=1, lr=3e-3, max_epochs=40), reference=teacher,
                        quiet=True)
    assert summary["requested_epochs"] == 1 and summary["metric"] == "accuracy"
    assert summary["epochs"] > 1 and summary["recovered"] and summary["stopped"] == "recovered"
    assert summary["score"] >= summary["target"] - 0.5
    assert 1 <= summary["best_epoch"] <= summary["epochs"]


def test_regression_recovers_in_r2_points():
    import keras

    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) + 0.1 * rng.normal(size=600)).astype("float32")
    data = Dataset(x[:480], y[:480], x[480:], y[480:])
    keras.utils.set_random_seed(6)
    reference = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    reference.compile(optimizer=keras.optimizers.Adam(3e-2), loss="mse")
    reference.fit(data.x_train, data.y_train, epochs=60, verbose=0)
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    summary = fine_tune(student, data, TrainSettings(epochs=2, lr=3e-2, max_epochs=60), reference=reference, quiet=True)
    assert summary["metric"] == "r2" and summary["target"] > 99
    assert summary["recovered"] and summary["score"] >= summary["target"] - 0.5


def test_a_sigmoid_classifier_is_scored_and_trained_as_binary():
    import keras

    data = _blobs(seed=1)
    binary = Dataset(data.x_train, (data.y_train == 0).astype("int64"), data.x_test,
                     (data.y_test == 0).astype("int64"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    _, report = run_recipe(model, binary, [{"technique": "structured", "ratio": 0.5, "epochs": 4,
                                            "lr": 3e-3}], quiet=True, int8=False)
    assert report["after"]["metric"] == "accuracy"
    assert report["after"]["value"] > 0.9
