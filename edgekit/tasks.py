"""What a model is for, and the numbers its users judge it by.

A classifier is judged by accuracy and per-class recall, a regressor by RMSE/MAE/R², an autoencoder by its
reconstruction error (and, for anomaly detection with 0/1 labels, the AUC of that error as a score). Printing
"top-1 agreement" for a regressor, or cutting an autoencoder's targets to a class label, says nothing true, so
every command asks this module which task it is looking at (`detect_task`, or the user's `--task`) and which
metrics to report (`task_metrics`).
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError

TASKS = ("classification", "binary", "multilabel", "regression", "reconstruction")
CLASS_TASKS = ("classification", "binary", "multilabel")


def check_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise EdgekitError(f"--task is {task!r}; expected one of {', '.join(TASKS)}", kind="usage")
    return task


def detect_task(input_shape, output_shape, y=None, last_activation: str | None = None) -> str:
    """The task, from the model's output (its size, last activation, sameness with the input) and the labels.

    - output of the input's shape: reconstruction (an autoencoder); labels are then anomaly labels;
    - labels of non-whole numbers, or rows that are neither one-hot nor 0/1: regression;
    - 0/1 rows of the output's width, not one-hot: multi-label; one output unit with 0/1 labels: binary;
    - softmax last: classification; sigmoid last: binary (one unit) or multi-label; linear: regression;
    - otherwise (several outputs, whole-number labels): classification.
    """
    size = int(np.prod(output_shape)) if output_shape is not None else None
    if last_activation == "softmax":
        return "classification"
    if output_shape is not None and input_shape is not None and _squeezed(output_shape) == _squeezed(input_shape) \
            and size is not None and size > 1:
        return "reconstruction"
    if last_activation == "sigmoid" and (y is None or np.isin(np.asarray(y), (0, 1)).all()):
        return "binary" if size == 1 else "multilabel"
    if y is not None:
        y = np.asarray(y)
        per_sample = _squeezed(y.shape[1:])
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            return "regression"
        if per_sample:
            rows = y.reshape(len(y), -1)
            one_hot = bool(np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))
            if one_hot:
                return "classification"
            if np.isin(rows, (0, 1)).all():
                return "multilabel"
            return "regression"
        if size == 1:  # integer labels other than 0/1 on one unit: refused as classes (--task regression)
            return "regression" if y.dtype.kind == "f" and not np.isin(y, (0, 1)).all() else "binary"
    if last_activation in ("linear", None) and size == 1:
        return "regression"
    if last_activation == "linear" and y is None:
        return "regression"
    return "classification"


def graph_last_activation(graph) -> str:
    """"softmax", "sigmoid" or "linear": what produces a .tflite model's first output."""
    op = graph.producer(graph.outputs[0])
    while op is not None and op.opcode in ("RESHAPE", "SQUEEZE", "QUANTIZE", "DEQUANTIZE", "EXPAND_DIMS"):
        op = graph.producer(op.inputs[0])
    return {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid"}.get(op.opcode if op else "", "linear")


def keras_last_activation(model) -> str | None:
    """The same for a Keras model (the layer making its first output); None when it cannot be told."""
    try:
        layer = model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError):
        return None
    name = type(layer).__name__.lower()
    if name == "softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear" if name in ("dense", "conv2d", "conv1d", "conv2dtranspose") else None
    return {"softmax": "softmax", "sigmoid": "sigmoid", "linear": "linear"}.get(
        getattr(activation, "__name__", ""), None)


def _squeezed(shape) -> tuple:
    return tuple(int(d) for d in shape if d != 1)


def prepare_targets(task: str, y, count: int, output_shape, what: str) -> np.ndarray | None:
    """Targets as each task reads them: float (N, *output) for regression, int (N,) anomaly labels for a
    reconstruction model (or None: the input is the target), 0/1 (N, K) for multi-label. Classification labels
    go through edgekit.data's class checks instead."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.dtype.kind not in "biuf" or y.dtype.fields is not None:
        raise EdgekitError(f"{what}: targets have dtype {y.dtype}; expected numbers")
    if y.ndim == 0 or len(y) != count:
        raise EdgekitError(f"{what}: {count} samples but {y.size if y.ndim == 0 else len(y)} targets; expected "
                           "one per sample")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise EdgekitError(f"{what}: targets contain NaN or infinite values; expected finite numbers")
    size = int(np.prod(output_shape)) if output_shape is not None else None
    if task == "reconstruction":
        flat = y.reshape(count, -1)
        if size is not None and flat.shape[1] == size and size > 1:
            return y.astype(np.float32)  # targets of the output's shape (a denoising autoencoder's clean inputs)
        if flat.shape[1] != 1 or not np.isin(flat, (0, 1)).all():
            raise EdgekitError(f"{what}: a reconstruction model's labels have shape {tuple(y.shape[1:])} per "
                               "sample; expected none (the input is the target), targets of the output's shape "
                               f"{tuple(output_shape) if output_shape is not None else ''}, or one 0/1 anomaly "
                               "label per sample (0 normal, 1 anomaly)")
        return flat[:, 0].astype(np.int64)
    if task in ("regression", "multilabel"):
        flat = y.reshape(count, -1).astype(np.float32)
        if size is not None and flat.shape[1] != size:
            raise EdgekitError(f"{what}: targets have {flat.shape[1]} values per sample but the model's output "
                               f"has {size}; expected targets of the output's shape {tuple(output_shape)}")
        if task == "multilabel" and not np.isin(flat, (0, 1)).all():
            raise EdgekitError(f"{what}: multi-label targets must be 0 or 1; expected (N, {size}) rows of 0/1")
        return flat
    raise ValueError(task)


# -- metrics -----------------------------------------------------------------------------------------------------


def task_metrics(task: str, outputs: np.ndarray, y=None, x=None) -> dict:
    """The metrics of one model's outputs (float or int8) for its task; y: labels/targets, x: the inputs (for
    reconstruction error)."""
    out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    if task in ("classification", "binary"):
        if y is None:
            return {}
        y = np.asarray(y).reshape(-1).astype(np.int64)
        predicted = (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)
        classes = sorted(set(y.tolist()))
        return {"accuracy": float(np.mean(predicted == y)),
                "recall": {int(c): float(np.mean(predicted[y == c] == c)) for c in classes}}
    if task == "multilabel":
        if y is None:
            return {}
        truth = np.asarray(y).reshape(len(out), -1) > 0.5
        predicted = out > 0.5
        recall = {}
        for k in range(truth.shape[1]):
            positives = truth[:, k]
            recall[k] = float(np.mean(predicted[positives, k])) if positives.any() else None
        return {"accuracy": float(np.mean(np.all(predicted == truth, axis=1))),  # exact match
                "label_accuracy": float(np.mean(predicted == truth)), "recall": recall}
    if task == "regression":
        if y is None:
            return {}
        target = np.asarray(y, np.float64).reshape(out.shape)
        error = out - target
        total = float(np.sum((target - target.mean(axis=0)) ** 2))
        return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error))),
                "r2": None if total == 0 else float(1 - np.sum(error ** 2) / total)}
    if task == "reconstruction":
        targets = y if y is not None and np.asarray(y).size == out.size and out.shape[1] > 1 else x
        if targets is None:
            return {}
        errors = np.mean((out - np.asarray(targets, np.float64).reshape(out.shape)) ** 2, axis=1)
        metrics = {"reconstruction_mse": float(np.mean(errors))}
        if y is not None and targets is x:  # 0/1 anomaly labels: the error is the anomaly score
            metrics["auc"] = roc_auc(errors, np.asarray(y).reshape(-1))
        return metrics
    raise ValueError(task)


def roc_auc(scores, labels) -> float | None:
    """Area under the ROC curve of `scores` for 0/1 `labels` (ties counted half): the Mann-Whitney statistic."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives):
        return None
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    combined = np.concatenate([positives, negatives])
    for value in np.unique(combined):  # average ranks of ties
        same = combined == value
        ranks[same] = ranks[same].mean()
    rank_sum = ranks[:len(positives)].sum()
    return float((rank_sum - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives)))


def agreement(task: str, reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Top-1 agreement of two models' outputs, for the tasks where a top-1 exists; None otherwise."""
    ref = np.asarray(reference).reshape(len(reference), -1)
    cand = np.asarray(candidate).reshape(len(candidate), -1)
    if task in ("classification", "binary"):
        if ref.shape[1] == 1:
            return float(np.mean((ref[:, 0] > 0.5) == (cand[:, 0] > 0.5)))
        return float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
    if task == "multilabel":
        return float(np.mean((ref > 0.5) == (cand > 0.5)))
    return None
