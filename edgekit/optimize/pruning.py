"""Magnitude (unstructured) pruning: zero the smallest weights, fine-tune with the zeros held fixed.

On a microcontroller a TFLite flatbuffer stores and multiplies zeros like any other weight, so this saves
nothing in MACs or RAM; it pays only where the model is compressed (an OTA update, a compressed flash image),
which is why the report gives the zlib size of the int8 model. The result is a plain Keras model: the masks
live in a training callback, not in wrapper layers.

Schedules: "constant" prunes to the target at once and keeps the masks; "polynomial" raises sparsity from 0 to
the target along (1 - progress)^3 over the first 70% of the requested fine-tuning steps, re-ranking weights as it
goes. Only epochs at the target sparsity count for recovery (finetune.py): the best weights are always sparse.
Scope: "layer" gives every kernel the same sparsity; "global" ranks all kernels' weights together.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.optimize.metrics import _kernel_of

POLYNOMIAL_POWER = 3
POLYNOMIAL_END = 0.7  # fraction of the fine-tuning steps after which sparsity stays at the target
UPDATES_PER_EPOCH = 2


def prunable_kernels(model) -> list:
    """(layer name, kernel variable) of every Conv/Dense/Depthwise layer."""
    return [(layer.name, _kernel_of(layer)) for layer in model.layers if _kernel_of(layer) is not None]


def compute_masks(arrays: list[np.ndarray], sparsity: float, scope: str) -> list[np.ndarray]:
    """Masks (1 keep, 0 prune) removing the `sparsity` fraction of smallest-magnitude weights."""
    if scope == "global":
        magnitudes = np.concatenate([np.abs(a).ravel() for a in arrays])
        count = int(round(sparsity * magnitudes.size))
        if count == 0:
            return [np.ones_like(a) for a in arrays]
        order = np.argsort(magnitudes, kind="stable")
        flat = np.ones(magnitudes.size, dtype=arrays[0].dtype)
        flat[order[:count]] = 0
        masks, start = [], 0
        for a in arrays:
            masks.append(flat[start:start + a.size].reshape(a.shape))
            start += a.size
        return masks
    masks = []
    for a in arrays:
        count = int(round(sparsity * a.size))
        mask = np.ones(a.size, dtype=a.dtype)
        mask[np.argsort(np.abs(a).ravel(), kind="stable")[:count]] = 0
        masks.append(mask.reshape(a.shape))
    return masks


def polynomial_sparsity(target: float, step: int, end_step: int) -> float:
    if end_step <= 0 or step >= end_step:
        return target
    return target * (1 - (1 - step / end_step) ** POLYNOMIAL_POWER)


class Pruner:
    """Holds the masks and applies them; `callback()` keeps them during Keras training."""

    def __init__(self, model, sparsity: float, schedule: str = "constant", scope: str = "layer"):
        if not 0 <= sparsity < 1:
            raise EdgekitError(f"magnitude pruning sparsity must be in [0, 1), got {sparsity}")
        self.kernels = prunable_kernels(model)
        if not self.kernels:
            raise EdgekitError("magnitude pruning found no Conv or Dense kernels in the model")
        self.sparsity, self.schedule, self.scope = sparsity, schedule, scope
        self.masks = None
        self.current = None  # the sparsity the masks hold now

    def update(self, sparsity: float) -> None:
        self.masks = compute_masks([np.asarray(v) for _, v in self.kernels], sparsity, self.scope)
        self.current = sparsity
        self.apply()

    def at_target(self) -> bool:
        """Whether the masks hold the target sparsity (until then, a fine-tuning epoch is not a candidate)."""
        return self.current == self.sparsity

    def apply(self) -> None:
        for (_, variable), mask in zip(self.kernels, self.masks):
            variable.assign(np.asarray(variable) * mask)

    def callback(self, total_steps: int, steps_per_epoch: int):
        from edgekit._tf import keras

        pruner = self
        end = int(POLYNOMIAL_END * total_steps)
        every = max(1, steps_per_epoch // UPDATES_PER_EPOCH)

        class _KeepMasks(keras().callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.step = 0
                pruner.update(pruner.sparsity if pruner.schedule == "constant" else 0.0)

            def on_train_batch_end(self, batch, logs=None):
                self.step += 1
                if pruner.schedule == "polynomial" and self.step % every == 0 and self.step <= end + every:
                    pruner.update(polynomial_sparsity(pruner.sparsity, self.step, end))
                else:
                    pruner.apply()

            def on_train_end(self, logs=None):
                pruner.update(pruner.sparsity)  # exactly the target, whatever the step count

        return _KeepMasks()


def magnitude_prune(model, dataset, sparsity: float, schedule: str, scope: str, settings, *, reference=None,
                    quiet=False) -> dict:
    """Prune `model` in place (and fine-tune it with the masks fixed when settings.epochs > 0); per-layer report."""
    from edgekit.optimize.finetune import fine_tune
    from edgekit.optimize.metrics import layer_sparsity

    pruner = Pruner(model, sparsity, schedule, scope)
    if settings.epochs > 0:
        steps_per_epoch = int(np.ceil(len(dataset.x_train) / settings.batch_size))
        total = settings.epochs * steps_per_epoch
        training = fine_tune(model, dataset, settings, reference=reference, quiet=quiet,
                             description=f"magnitude pruning {sparsity:.0%}",
                             callbacks_factory=lambda: [pruner.callback(total, steps_per_epoch)],
                             ready=pruner.at_target)
        pruner.update(sparsity)  # the kept best weights, exactly at the target
    else:
        if schedule == "polynomial":
            raise EdgekitError("the polynomial schedule prunes gradually while training; set epochs > 0 or use "
                               "the constant schedule")
        pruner.update(sparsity)
        training = {"epochs": 0}
    return {"layers": layer_sparsity(model), "training": training}
