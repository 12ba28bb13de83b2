"""Fine-tuning shared by every technique: loss from the data, Adam with clipping, L1, a learning-rate sweep.

Without labels, fine-tuning means "agree with the model as it was before this step" (its outputs are the
targets), so pruning an unlabelled autoencoder or classifier still recovers what it lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import EdgekitError

LR_SWEEP = (3e-3, 1e-3, 3e-4)  # tried by lr="auto"; the best on a validation split is kept
VALIDATION_FRACTION = 0.15


@dataclass
class TrainSettings:
    """Training knobs every step accepts (recipe keys of the same names)."""

    epochs: int = 0
    lr: float | str = 1e-3  # a float, or "auto" for the sweep
    batch_size: int = 32
    clipnorm: float | None = None
    clipvalue: float | None = None
    l1: float = 0.0
    seed: int = 0

    @classmethod
    def from_step(cls, step: dict) -> "TrainSettings":
        return cls(**{k: step[k] for k in cls.__dataclass_fields__ if k in step})


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
          callbacks_factory=None) -> dict:
    """Fit in place with Adam (clipping, L1 as set); with lr="auto", try LR_SWEEP and keep the best weights.

    callbacks_factory() returns fresh callbacks for each run (pruning masks need theirs per run).
    Returns {"epochs", "lr", "final_loss", "sweep": [{"lr", "val_loss"}...]}.
    """
    if settings.epochs <= 0:
        return {"epochs": 0, "lr": None, "final_loss": None, "sweep": []}
    from edgekit._tf import keras

    keras().utils.set_random_seed(settings.seed)
    if settings.lr != "auto":
        final = _fit(model, x, y, loss, settings, float(settings.lr), quiet, description, callbacks_factory)
        return {"epochs": settings.epochs, "lr": float(settings.lr), "final_loss": final, "sweep": []}

    order = np.random.default_rng(settings.seed).permutation(len(x))
    cut = max(1, int(len(x) * VALIDATION_FRACTION))
    val, fit = order[:cut], order[cut:]
    start = model.get_weights()
    best = None
    sweep = []
    for lr in LR_SWEEP:
        model.set_weights(start)
        keras().utils.set_random_seed(settings.seed)
        _fit(model, x[fit], y[fit], loss, settings, lr, quiet, f"{description} (lr {lr:g})", callbacks_factory)
        val_loss = float(model.evaluate(x[val], y[val], batch_size=256, verbose=0))
        sweep.append({"lr": lr, "val_loss": val_loss})
        if best is None or val_loss < best[0]:
            best = (val_loss, lr, model.get_weights())
    model.set_weights(best[2])
    return {"epochs": settings.epochs, "lr": best[1], "final_loss": best[0], "sweep": sweep}


def _fit(model, x, y, loss, settings, lr, quiet, description, callbacks_factory) -> float:
    from edgekit._tf import keras

    from edgekit.console import progress

    k = keras()
    optimizer = k.optimizers.Adam(lr, clipnorm=settings.clipnorm, clipvalue=settings.clipvalue)
    regularized = _add_l1(model, settings.l1)
    try:
        model.compile(optimizer=optimizer, loss=loss)
        steps = settings.epochs * int(np.ceil(len(x) / settings.batch_size))
        with progress(quiet) as bar:
            callbacks = [progress_callback(bar, description, steps)]
            if callbacks_factory is not None:
                callbacks += callbacks_factory()
            history = model.fit(x, y, epochs=settings.epochs, batch_size=settings.batch_size, shuffle=True,
                                callbacks=callbacks, verbose=0)
    finally:
        for variable in regularized:
            variable.regularizer = None
    return float(history.history["loss"][-1])


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
              callbacks_factory=None) -> dict:
    """Fine-tune `model` in place on the dataset (labels, or agreement with `reference` without labels)."""
    if settings.epochs <= 0:
        return train(model, None, None, None, settings)
    require_data(dataset, description)
    x, y, loss = targets_and_loss(model, dataset, reference)
    return train(model, x, y, loss, settings, quiet=quiet, description=description,
                 callbacks_factory=callbacks_factory)


def require_data(dataset, what: str) -> None:
    if dataset is None or getattr(dataset, "x_train", None) is None or not len(dataset.x_train):
        raise EdgekitError(f"{what} needs training data; pass --data FILE (or `data` in the recipe), or set "
                           f"epochs to 0")
