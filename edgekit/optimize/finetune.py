"""Fine-tuning shared by every technique: loss from the data, Adam with clipping, L1, a learning-rate sweep, and
training that goes on until the model has recovered.

Without labels, fine-tuning means "agree with the model as it was before this step" (its outputs are the
targets), so pruning an unlabelled autoencoder or classifier still recovers what it lost.

Recovery: every run holds out a validation split and scores the model on it after each epoch, in points (0-100)
of the metric its users read: accuracy with class labels, top-1 agreement with the model before the step
without labels, and R^2 x 100 for regression and reconstruction targets. The goal is the score of the model
before the step, within `recover_within` points. A fixed epoch count stops too early on one CPU and wastes
time on another; training to a goal on held-out data is what makes the result the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekit.errors import EdgekitError

LR_SWEEP = (3e-3, 1e-3, 3e-4)  # tried by lr="auto"; the best on a validation split is kept
VALIDATION_FRACTION = 0.15
MIN_VALIDATION_SAMPLES = 8  # below this many held-out samples, train the requested epochs without a goal
RECOVER_WITHIN = 0.5  # points of the metric below the model before the step that count as recovered
MAX_EPOCHS_FACTOR = 5  # training goes on up to this many times the requested epochs while not recovered
PATIENCE = 6  # epochs past the requested ones without a better validation score before giving up
PLATEAU = 2  # epochs without a better validation score before the learning rate is halved


@dataclass
class TrainSettings:
    """Training knobs every step accepts (recipe keys of the same names)."""

    epochs: int = 0
    lr: float | str = 3e-3  # a float, or "auto" for the sweep; halved on every plateau (see PLATEAU)
    batch_size: int = 32
    clipnorm: float | None = None
    clipvalue: float | None = None
    l1: float = 0.0
    seed: int = 0
    recover_within: float = RECOVER_WITHIN
    max_epochs: int | None = None  # None: MAX_EPOCHS_FACTOR x epochs

    @classmethod
    def from_step(cls, step: dict) -> "TrainSettings":
        return cls(**{k: step[k] for k in cls.__dataclass_fields__ if k in step})


@dataclass
class Goal:
    """What "recovered" means for one step: a score in points on the validation split (higher is better) and
    the score of the model before the step."""

    metric: str  # "accuracy", "agreement" or "r2"
    target: float
    tolerance: float
    score: Callable  # validation outputs -> points


def recovery_goal(reference, x_val, labels_val, tolerance: float) -> Goal | None:
    """The goal for fine-tuning on x_val: the reference (the model before the step) scored as the task says."""
    from edgekit.optimize.metrics import is_binary, is_classifier, predict

    if reference is None:
        return None
    before = predict(reference, x_val)
    if labels_val is not None:
        labels = np.asarray(labels_val)
        if is_classifier(before) and labels.ndim == 1:
            return _goal("accuracy", lambda out: 100.0 * float(np.mean(np.argmax(out, axis=1) == labels)),
                         before, tolerance)
        if is_binary(before, labels):
            truth = labels.ravel() > 0.5
            return _goal("accuracy", lambda out: 100.0 * float(np.mean((out[:, 0] > 0.5) == truth)), before,
                         tolerance)
        targets = labels.astype(np.float32).reshape(before.shape)
    elif is_classifier(before):
        top = np.argmax(before, axis=1)
        return _goal("agreement", lambda out: 100.0 * float(np.mean(np.argmax(out, axis=1) == top)), before,
                     tolerance)
    else:
        targets = before
    spread = float(np.mean((targets - targets.mean()) ** 2)) or float(np.mean(targets ** 2)) or 1.0
    return _goal("r2", lambda out: 100.0 * (1.0 - float(np.mean((out - targets) ** 2)) / spread), before,
                 tolerance)


def _goal(metric, score, before, tolerance) -> Goal:
    return Goal(metric, score(before), tolerance, score)


def progress_callback(bar, description: str, total_steps: int):
    """A Keras callback that advances an edgekit.console progress bar once per training batch."""
    from edgekit._tf import keras

    class _Progress(keras().callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.task = bar.add_task(description, total=total_steps)

        def on_train_batch_end(self, batch, logs=None):
            bar.advance(self.task)

    return _Progress()


def classification_loss(model, x, labels):
    """Sparse cross-entropy, from logits unless the model already outputs probabilities."""
    from edgekit._tf import keras

    from edgekit.optimize.metrics import predict

    sample = predict(model, x[:64])
    probabilities = bool(np.all(sample >= 0) and np.allclose(sample.sum(axis=-1), 1.0, atol=1e-3))
    return keras().losses.SparseCategoricalCrossentropy(from_logits=not probabilities)


def targets_and_loss(model, dataset, reference=None):
    """(x, y, loss) to fine-tune `model` on: labels when the data has them, else the reference model's outputs."""
    from edgekit._tf import keras

    from edgekit.optimize.metrics import is_binary, is_classifier, predict

    x, y = dataset.x_train, dataset.y_train
    if y is not None:
        outputs = predict(model, x[:64])
        if is_classifier(outputs) and np.asarray(y).ndim == 1:
            return x, np.asarray(y), classification_loss(model, x, y)
        if is_binary(outputs, y):
            return x, np.asarray(y, np.float32).reshape(-1, 1), keras().losses.BinaryCrossentropy()
        targets = np.asarray(y, dtype=np.float32).reshape((len(x),) + outputs.shape[1:])
        return x, targets, keras().losses.MeanSquaredError()
    if reference is None:
        raise EdgekitError("fine-tuning needs labels (y_train) or a reference model; the data has no labels")
    from edgekit.optimize.distill import distillation_targets_and_loss

    targets, loss = distillation_targets_and_loss(model, reference, x, None, temperature=1.0, alpha=1.0)
    return x, targets, loss


def train(model, x, y, loss, settings: TrainSettings, *, quiet: bool = False, description: str = "fine-tune",
          callbacks_factory=None, goal_factory=None, ready=None) -> dict:
    """Fit in place with Adam (clipping, L1 as set) until the model has recovered; with lr="auto", try LR_SWEEP.

    A validation split is held out of x. After every epoch the model is scored on it (`goal_factory(val_index)`
    gives the Goal: the metric and the score of the model before this step); the best weights are kept, training
    goes on past the requested epochs while the score is short of the goal (up to settings.max_epochs, 5x the
    requested epochs by default), and stops once recovered or when it has not improved for PATIENCE epochs.
    `ready()` says whether an epoch may count (a pruning schedule that has not reached its target may not).
    callbacks_factory() returns fresh callbacks for each run (pruning masks need theirs per run).
    Returns {"epochs", "requested_epochs", "max_epochs", "lr", "final_loss", "metric", "target", "score",
    "recovered", "stopped", "sweep"}.
    """
    if settings.epochs <= 0:
        return {"epochs": 0, "requested_epochs": 0, "lr": None, "final_loss": None, "sweep": []}
    from edgekit._tf import keras

    order = np.random.default_rng(settings.seed).permutation(len(x))
    cut = int(len(x) * VALIDATION_FRACTION) if len(x) >= MIN_VALIDATION_SAMPLES / VALIDATION_FRACTION else 0
    val, fit = np.sort(order[:cut]), np.sort(order[cut:])
    goal = goal_factory(val) if goal_factory is not None and cut else None
    rates = LR_SWEEP if settings.lr == "auto" else (float(settings.lr),)
    start = model.get_weights()
    best, sweep = None, []
    for lr in rates:
        model.set_weights(start)
        keras().utils.set_random_seed(settings.seed)
        label = f"{description} (lr {lr:g})" if len(rates) > 1 else description
        run = _fit(model, x, y, loss, settings, lr, fit, val, goal, ready, quiet, label, callbacks_factory)
        sweep.append({"lr": lr, "val_loss": run["val_loss"], "score": run["score"]})
        if best is None or _better(run, best[0]):
            best = (run, model.get_weights())
    run = best[0]
    model.set_weights(best[1])
    summary = {"epochs": run["epochs"], "requested_epochs": settings.epochs, "max_epochs": _max_epochs(settings),
               "lr": run["lr"], "final_loss": run["val_loss"] if run["val_loss"] is not None else run["loss"],
               "metric": goal.metric if goal else None, "target": goal.target if goal else None,
               "tolerance": goal.tolerance if goal else None, "score": run["score"],
               "best_epoch": run["best_epoch"], "recovered": run["recovered"], "stopped": run["stopped"],
               "sweep": sweep if len(rates) > 1 else []}
    return summary


def _better(run: dict, other: dict) -> bool:
    """Higher score first, then lower validation loss (the score of a small split often ties)."""
    def key(r):
        score = r["score"] if r["score"] is not None else -np.inf
        loss = r["val_loss"] if r["val_loss"] is not None else np.inf
        return (score, -loss)

    return key(run) > key(other)


def _max_epochs(settings: TrainSettings) -> int:
    if settings.max_epochs is not None:
        return max(settings.max_epochs, settings.epochs)
    return settings.epochs * MAX_EPOCHS_FACTOR


def _fit(model, x, y, loss, settings, lr, fit, val, goal, ready, quiet, description, callbacks_factory) -> dict:
    """One training run at one learning rate; the model ends with the run's best weights."""
    from edgekit._tf import keras

    from edgekit.console import progress

    k = keras()
    optimizer = k.optimizers.Adam(lr, clipnorm=settings.clipnorm, clipvalue=settings.clipvalue)
    regularized = _add_l1(model, settings.l1)
    steps_per_epoch = int(np.ceil(len(fit) / settings.batch_size))
    limit = _max_epochs(settings)
    recovery = recovery_callback(x[val], y[val], loss, goal, ready, settings.epochs, PATIENCE) if len(val) else None
    try:
        model.compile(optimizer=optimizer, loss=loss)
        with progress(quiet) as bar:
            callbacks = [progress_callback(bar, description, settings.epochs * steps_per_epoch)]
            if callbacks_factory is not None:
                callbacks += callbacks_factory()
            if recovery is not None:
                recovery.extend_bar = lambda epochs: bar.update(callbacks[0].task,
                                                                total=epochs * steps_per_epoch)
                callbacks.append(recovery)
            history = model.fit(x[fit], y[fit], epochs=limit if recovery is not None else settings.epochs,
                                batch_size=settings.batch_size, shuffle=True, callbacks=callbacks, verbose=0)
    finally:
        for variable in regularized:
            variable.regularizer = None
    trained = len(history.history["loss"])
    run = {"lr": lr, "epochs": trained, "loss": float(history.history["loss"][-1]), "val_loss": None,
           "score": None, "best_epoch": trained, "recovered": None, "stopped": "epochs"}
    if recovery is not None:
        run.update(recovery.result())
        if recovery.best_weights is not None:
            model.set_weights(recovery.best_weights)
    return run


def recovery_callback(x_val, y_val, loss, goal, ready, requested: int, patience: int):
    """A Keras callback that scores every epoch on the validation split, keeps the best weights and stops
    training once the goal is met (after the requested epochs) or when the score has not improved for
    `patience` epochs past them; the learning rate halves after every PLATEAU epochs without improvement.
    Epochs for which `ready()` is false (a pruning schedule still ramping) do not count."""
    from edgekit._tf import keras

    from edgekit.optimize.metrics import predict

    class _Recovery(keras().callbacks.Callback):
        best = None  # (score, -val_loss, epoch)
        best_weights = None
        stopped = "max_epochs"
        extend_bar = None

        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= requested and self.extend_bar is not None:
                self.extend_bar(epoch + 1)

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            if ready is not None and not ready():
                return
            outputs = predict(self.model, x_val)
            val_loss = _loss_value(loss, y_val, outputs)
            score = goal.score(outputs) if goal is not None else -val_loss
            if self.best is None or (score, -val_loss) > self.best[:2]:
                self.best = (score, -val_loss, done)
                self.best_weights = self.model.get_weights()
            if done >= requested and (goal is None or self.recovered()):
                self.stopped = "recovered" if goal is not None else "epochs"
                self.model.stop_training = True
            elif done >= requested and done - self.best[2] >= patience:
                self.stopped = "no improvement"
                self.model.stop_training = True
            elif done > self.best[2] and (done - self.best[2]) % PLATEAU == 0:
                rate = self.model.optimizer.learning_rate
                rate.assign(float(np.asarray(rate)) * 0.5)  # a plateau: smaller steps settle into the minimum

        def recovered(self) -> bool | None:
            if goal is None or self.best is None:
                return None
            return bool(self.best[0] >= goal.target - goal.tolerance)

        def result(self) -> dict:
            if self.best is None:
                return {"stopped": "not ready"}
            score, neg_loss, epoch = self.best
            return {"val_loss": -neg_loss, "score": score if goal is not None else None, "best_epoch": epoch,
                    "recovered": self.recovered(), "stopped": self.stopped}

    return _Recovery()


def _loss_value(loss, targets, outputs) -> float:
    from edgekit._tf import keras

    ops = keras().ops
    value = loss(ops.convert_to_tensor(targets), ops.convert_to_tensor(outputs))
    return float(np.mean(ops.convert_to_numpy(value)))


def _add_l1(model, l1: float) -> list:
    """Put an L1 penalty on every kernel for this fit (it pushes weights to zero before magnitude pruning)."""
    if not l1:
        return []
    from edgekit._tf import keras

    from edgekit.optimize.metrics import _kernel_of

    variables = []
    for layer in model.layers:
        kernel = _kernel_of(layer)
        if kernel is not None and hasattr(kernel, "regularizer"):
            kernel.regularizer = keras().regularizers.L1(l1)
            variables.append(kernel)
    return variables


def fine_tune(model, dataset, settings: TrainSettings, *, reference=None, quiet=False, description="fine-tune",
              callbacks_factory=None, ready=None) -> dict:
    """Fine-tune `model` in place on the dataset (labels, or agreement with `reference` without labels) until
    it scores within settings.recover_within points of `reference` on a validation split (see train)."""
    if settings.epochs <= 0:
        return train(model, None, None, None, settings)
    require_data(dataset, description)
    x, y, loss = targets_and_loss(model, dataset, reference)
    labels = dataset.y_train
    return train(model, x, y, loss, settings, quiet=quiet, description=description,
                 callbacks_factory=callbacks_factory, ready=ready,
                 goal_factory=lambda val: recovery_goal(reference, x[val], None if labels is None else
                                                        np.asarray(labels)[val], settings.recover_within))


def require_data(dataset, what: str) -> None:
    if dataset is None or getattr(dataset, "x_train", None) is None or not len(dataset.x_train):
        raise EdgekitError(f"{what} needs training data; pass --data FILE (or `data` in the recipe), or set "
                           f"epochs to 0")
