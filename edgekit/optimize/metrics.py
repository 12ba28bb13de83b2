"""What a model costs and how well it does: parameters, MACs, accuracy, and the int8 numbers a device sees.

MACs and parameters come from edgekit.analyze.counts on the quantized graph whenever there is data to quantize
with (the same count analyze, build and profile print); without data, layer_macs counts the Keras layers with the
same definition (output elements x kernel elements x input channels per group; a transposed convolution's input
elements x kernel elements x filters).
"""

from __future__ import annotations

import zlib

import numpy as np


def _shape(tensor_or_shape):
    shape = getattr(tensor_or_shape, "shape", tensor_or_shape)
    return tuple(int(d) if d is not None else 1 for d in shape)


def layer_macs(layer) -> int:
    """Multiply-accumulates of one layer per inference (0 for layers without a kernel)."""
    kind = type(layer).__name__
    if kind in ("Conv1DTranspose", "Conv2DTranspose"):  # every input element meets the whole kernel, per filter
        return int(np.prod(_shape(layer.input)[1:])) * int(np.prod(layer.kernel_size)) * int(layer.filters)
    if kind not in ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D", "Dense", "SeparableConv2D"):
        return 0
    out_shape = _shape(layer.output)[1:]
    in_channels = _shape(layer.input)[-1]
    out_elements = int(np.prod(out_shape))
    if kind == "Dense":
        return out_elements * in_channels
    kernel_elements = int(np.prod(layer.kernel_size))
    if kind.startswith("Depthwise"):
        return out_elements * kernel_elements
    if kind == "SeparableConv2D":
        spatial = int(np.prod(out_shape[:-1]))
        return spatial * in_channels * layer.depth_multiplier * kernel_elements + out_elements * in_channels * \
            layer.depth_multiplier
    groups = getattr(layer, "groups", 1) or 1
    return out_elements * kernel_elements * (in_channels // groups)


def model_macs(model) -> int:
    return sum(layer_macs(layer) for layer in model.layers)


def model_params(model) -> int:
    return int(model.count_params())


def predict(model, x, batch_size: int = 256):
    """Outputs as one numpy array (first output of multi-output models)."""
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return out[0] if isinstance(out, (list, tuple)) else out


def is_classifier(outputs) -> bool:
    """A (N, classes) output with more than one class: scored by top-1 accuracy."""
    return outputs.ndim == 2 and outputs.shape[1] > 1


def is_binary(outputs, labels) -> bool:
    """One sigmoid unit against 0/1 labels."""
    return outputs.ndim == 2 and outputs.shape[1] == 1 and bool(np.all((outputs >= 0) & (outputs <= 1))) \
        and labels is not None and np.isin(np.unique(labels), (0, 1)).all()


def quality(model, dataset, reference_outputs=None) -> dict:
    """How well the model does on the test split: accuracy with labels, else agreement with a reference model.

    Returns {"metric": name, "value": float}; metric is "accuracy" (labels, classifier), "mse" (labels,
    regression), "agreement" (no labels, top-1 agreement with the reference) or "nmse" (no labels, regression:
    mean squared difference to the reference over its mean square).
    """
    x, y = _eval_split(dataset)
    if x is None:
        return {"metric": None, "value": None}
    outputs = predict(model, x)
    if y is not None:
        if is_classifier(outputs) and y.ndim == 1:
            return {"metric": "accuracy", "value": float(np.mean(np.argmax(outputs, axis=1) == y))}
        if is_binary(outputs, y):
            return {"metric": "accuracy", "value": float(np.mean((outputs[:, 0] > 0.5) == (y.ravel() > 0.5)))}
        return {"metric": "mse", "value": float(np.mean((outputs - y.reshape(outputs.shape)) ** 2))}
    if reference_outputs is None:
        return {"metric": None, "value": None}
    if is_classifier(outputs):
        agree = np.argmax(outputs, axis=1) == np.argmax(reference_outputs, axis=1)
        return {"metric": "agreement", "value": float(np.mean(agree))}
    power = float(np.mean(reference_outputs ** 2)) or 1.0
    return {"metric": "nmse", "value": float(np.mean((outputs - reference_outputs) ** 2) / power)}


def _eval_split(dataset):
    """The test split when there is one, else the training inputs (for output agreement)."""
    if dataset is None:
        return None, None
    if getattr(dataset, "x_test", None) is not None and len(dataset.x_test):
        return dataset.x_test, dataset.y_test
    return dataset.x_train, None


def layer_sparsity(model) -> list[dict]:
    """Fraction of exact zeros in each kernel (what magnitude pruning produced)."""
    rows = []
    for layer in model.layers:
        kernel = _kernel_of(layer)
        if kernel is None:
            continue
        values = np.asarray(kernel)
        rows.append({"layer": layer.name, "weights": int(values.size),
                     "sparsity": float(np.mean(values == 0))})
    return rows


def _kernel_of(layer):
    for attr in ("kernel", "depthwise_kernel"):
        variable = getattr(layer, attr, None)
        if variable is not None:
            return variable
    return None


def int8_figures(model, dataset, calibration_samples: int = 100) -> dict | None:
    """Flash and RAM of the fully int8 model a device would run, its zlib-compressed size and int8 accuracy.

    Unstructured sparsity only pays in the compressed size (a TFLite flatbuffer stores zeros like any weight);
    structured pruning lowers all of them. None when there is no data to calibrate with.
    """
    if dataset is None or getattr(dataset, "x_train", None) is None:
        return None
    from edgekit.memory_plan import plan_activations
    from edgekit.quantize import quantize
    from edgekit.tflite_model import parse_tflite

    result = quantize(model, dataset, calibration_samples=calibration_samples, eval_samples=None,
                      per_layer=False, quiet=True)
    from edgekit.analyze import counts

    data = result.tflite_bytes
    graph = parse_tflite(data, "optimized")
    counted = counts(graph, plan_activations(graph))
    return {"flash_bytes": len(data), "zlib_bytes": len(zlib.compress(data, 9)),
            "activation_bytes": int(counted["peak_activation_bytes"]),
            "macs": counted["macs"], "params": counted["params"],  # edgekit.analyze's count, as every command
            "accuracy": result.report.get("int8_accuracy"), "tflite_bytes": data}
