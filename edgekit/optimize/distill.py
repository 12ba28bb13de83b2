"""Knowledge distillation: a student learns the teacher's softened outputs as well as (or instead of) the labels.

Loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * cross-entropy(labels).
Models ending in softmax are handled through log-probabilities (log softmax(z) = z + const, so softening them
equals softening the logits). A teacher whose output is not a class distribution (a regression, an autoencoder)
is matched by mean squared error instead. The teacher runs once over the training inputs; its outputs travel
with the labels as the fit targets, so the student trains with an ordinary Keras fit.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError

EPSILON = 1e-7


def _outputs_probabilities(outputs: np.ndarray) -> bool:
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def distillation_targets_and_loss(student, teacher, x, labels, temperature: float, alpha: float):
    """(targets, loss) for model.fit(x, targets): targets are [label, teacher logits...] per sample."""
    from edgekit._tf import keras

    from edgekit.optimize.metrics import is_classifier, predict

    ops = keras().ops
    teacher_out = predict(teacher, x)
    student_out = predict(student, x[:64])
    if teacher_out.shape[1:] != student_out.shape[1:]:
        raise EdgekitError(f"teacher output shape {teacher_out.shape[1:]} differs from the student's "
                           f"{student_out.shape[1:]}; distillation needs the same outputs")
    use_labels = labels is not None and alpha < 1
    if not is_classifier(teacher_out):
        mse = keras().losses.MeanSquaredError()
        if not use_labels:
            return teacher_out, mse
        labels = np.asarray(labels, np.float32).reshape(teacher_out.shape)
        return np.concatenate([labels, teacher_out], axis=-1), _regression_loss(teacher_out.shape[-1], alpha)

    teacher_logits = np.log(teacher_out + EPSILON) if _outputs_probabilities(teacher_out) else teacher_out
    student_probs = _outputs_probabilities(student_out)
    if use_labels and np.asarray(labels).ndim == 2:  # one-hot labels
        labels = np.argmax(labels, axis=1)
    label_column = (np.asarray(labels, np.float32) if use_labels else np.zeros(len(x), np.float32))[:, None]
    targets = np.concatenate([label_column, teacher_logits.astype(np.float32)], axis=-1)
    t = float(temperature)

    def loss(y_true, y_pred):
        s_logits = ops.log(y_pred + EPSILON) if student_probs else y_pred
        soft_teacher = ops.softmax(y_true[:, 1:] / t, axis=-1)
        kd = ops.sum(soft_teacher * (ops.log(soft_teacher + EPSILON) - ops.log_softmax(s_logits / t, axis=-1)),
                     axis=-1) * (t * t)
        if not use_labels:
            return ops.mean(kd)
        ce = keras().losses.sparse_categorical_crossentropy(ops.cast(y_true[:, 0], "int32"), s_logits,
                                                              from_logits=True)
        return ops.mean(alpha * kd + (1 - alpha) * ce)

    return targets, loss


def _regression_loss(width: int, alpha: float):
    from edgekit._tf import keras

    ops = keras().ops

    def loss(y_true, y_pred):
        labels, teacher = y_true[..., :width], y_true[..., width:]
        return ops.mean(alpha * (y_pred - teacher) ** 2 + (1 - alpha) * (y_pred - labels) ** 2)

    return loss


def distill(student, teacher, dataset, temperature: float, alpha: float, settings, *, quiet=False) -> dict:
    """Train `student` in place from `teacher` on the training inputs; returns the training summary."""
    from edgekit.optimize.finetune import recovery_goal, require_data, train

    require_data(dataset, "distillation")
    if settings.epochs <= 0:
        raise EdgekitError("distillation trains the student; set epochs > 0")
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise EdgekitError(f"distillation needs temperature > 0 and alpha in [0, 1], got {temperature}, {alpha}")
    targets, loss = distillation_targets_and_loss(student, teacher, dataset.x_train, dataset.y_train, temperature,
                                                  alpha)
    x, labels = dataset.x_train, dataset.y_train
    return train(student, x, targets, loss, settings, quiet=quiet,
                 description=f"distillation (T={temperature:g}, alpha={alpha:g})",
                 goal_factory=lambda val: recovery_goal(teacher, x[val], None if labels is None else
                                                        np.asarray(labels)[val], settings.recover_within))
