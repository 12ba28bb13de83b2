"""Tasks beyond classification: detection from the model and the labels, each task's metrics, and how data is read.

Metrics are checked against scikit-learn's own implementations on seeded data; detection on the shapes and
activations real models have (a softmax classifier, a one-unit regressor, an autoencoder).
"""

import numpy as np
import pytest
from PIL import Image

from edgekit.data import load_dataset, parse_input_range
from edgekit.errors import EdgekitError
from edgekit.tasks import detect_task, roc_auc, task_metrics


@pytest.mark.parametrize("input_shape, output_shape, y, activation, task", [
    ((8, 8, 1), (10,), np.array([0, 3, 9]), "softmax", "classification"),
    ((8, 8, 1), (10,), None, "softmax", "classification"),
    ((6,), (1,), np.array([0.25, 1.5, -3.0]), "linear", "regression"),
    ((6,), (1,), None, "linear", "regression"),
    ((6,), (1,), np.array([0, 1, 1]), "sigmoid", "binary"),
    ((6,), (4,), np.array([[0, 1, 1, 0], [1, 0, 0, 0]]), "sigmoid", "multilabel"),
    ((28, 28, 1), (28, 28, 1), None, "sigmoid", "reconstruction"),
    ((28, 28, 1), (28, 28, 1), np.array([0, 1, 0]), "linear", "reconstruction"),  # anomaly labels
    ((6,), (3,), np.array([[0.2, 1.7, 3.1], [0.0, 0.5, 2.0]]), None, "regression"),
])
def test_the_task_follows_from_the_model_and_the_labels(input_shape, output_shape, y, activation, task):
    assert detect_task(input_shape, output_shape, y, activation) == task


def test_classification_metrics_are_accuracy_and_per_class_recall():
    from sklearn.metrics import accuracy_score, recall_score

    rng = np.random.default_rng(0)
    scores = rng.random((200, 4))
    y = rng.integers(0, 4, 200)
    metrics = task_metrics("classification", scores, y)
    predicted = scores.argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    expected = recall_score(y, predicted, average=None, labels=[0, 1, 2, 3])
    assert [metrics["recall"][c] for c in range(4)] == pytest.approx(expected.tolist())


def test_regression_metrics_match_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(1)
    y = rng.normal(size=300).astype(np.float32)
    predicted = y + rng.normal(scale=0.3, size=300)
    metrics = task_metrics("regression", predicted[:, None], y)
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, predicted)))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, predicted))
    assert metrics["r2"] == pytest.approx(r2_score(y, predicted))
    assert "accuracy" not in metrics and "recall" not in metrics


def test_reconstruction_error_and_anomaly_auc_match_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    x = rng.random((120, 6, 6, 1))
    labels = (np.arange(120) % 4 == 0).astype(np.int64)
    reconstruction = x + rng.normal(scale=np.where(labels, 0.4, 0.1)[:, None, None, None], size=x.shape)
    errors = np.mean((reconstruction - x).reshape(120, -1) ** 2, axis=1)
    metrics = task_metrics("reconstruction", reconstruction, labels, x)
    assert metrics["reconstruction_mse"] == pytest.approx(errors.mean())
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, errors))
    ties = np.array([1.0, 1.0, 2.0, 0.5, 2.0])
    assert roc_auc(ties, np.array([1, 0, 1, 0, 0])) == pytest.approx(roc_auc_score([1, 0, 1, 0, 0], ties))


def test_float_targets_are_read_as_regression_targets(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 6)).astype(np.float32), rng.normal(size=50).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    data = load_dataset(tmp_path / "reg.npz", input_shape=(6,), output_shape=(1,), last_activation="linear")
    assert data.task == "regression" and data.y_test.dtype == np.float32
    assert sorted(np.concatenate([data.y_train, data.y_test]).ravel().tolist()) == sorted(y.tolist())


def test_an_autoencoders_targets_are_never_cut_to_a_class_label(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.random((30, 28, 28, 1)).astype(np.float32)
    np.savez(tmp_path / "ae.npz", x=x, y=x)  # targets = the clean inputs
    data = load_dataset(tmp_path / "ae.npz", input_shape=(28, 28, 1), output_shape=(28, 28, 1))
    assert data.task == "reconstruction" and data.y_test.shape[1:] == (28, 28, 1)
    np.savez(tmp_path / "bad.npz", x=x, y=np.arange(30) % 3)  # neither targets nor 0/1 anomaly labels
    with pytest.raises(EdgekitError, match="one 0/1 anomaly label per sample") as error:
        load_dataset(tmp_path / "bad.npz", input_shape=(28, 28, 1), output_shape=(28, 28, 1))
    assert "\n" not in str(error.value)


def test_a_classifier_still_refuses_float_labels_naming_the_task_option(tmp_path):
    x = np.zeros((6, 4), np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0.5, 1, 2, 3, 0, 1]))
    with pytest.raises(EdgekitError, match=r"not whole numbers .*--task regression"):
        load_dataset(tmp_path / "d.npz", input_shape=(4,), output_shape=(4,), last_activation="softmax")


def test_image_folders_scale_pixels_to_the_input_range_and_say_so(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i, value in enumerate((0, 255)):
            Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / label / f"{i}.png")
    default = load_dataset(tmp_path, input_shape=(8, 8, 1))
    both = np.concatenate([default.x_train, default.x_test])
    assert both.min() == 0.0 and both.max() == 1.0 and "[0, 1]" in default.preprocessing
    mobilenet = load_dataset(tmp_path, input_shape=(8, 8, 1), input_range=parse_input_range("-1,1"))
    both = np.concatenate([mobilenet.x_train, mobilenet.x_test])
    assert both.min() == -1.0 and both.max() == 1.0 and "[-1, 1]" in mobilenet.preprocessing
    for bad in ("1,0", "a,b", "0", "nan,1"):
        with pytest.raises(EdgekitError, match="--input-range"):
            parse_input_range(bad)
