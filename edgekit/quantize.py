"""Full-integer post-training quantization, and an honest report of what it cost.

A Keras model (or SavedModel) is traced with a batch of 1, frozen, and converted by the TFLite converter with
int8 weights (per channel), int8 activations, int8 input and output and only TFLITE_BUILTINS_INT8 operators. A
float `.tflite` (no Keras source) goes through ai-edge-quantizer's static int8 recipe instead. Either way the
result is checked to be fully int8, then float and int8 are compared on held-out data, per model and per layer.
Already-converted `.tflite` files are taken too: int8 inside with float ends loses its boundary
QUANTIZE/DEQUANTIZE ops (no calibration), int8 weights around float activations are dequantized and requantized.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections import Counter
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass

import numpy as np

from edgekit.errors import EdgekitError

DEFAULT_CALIBRATION_SAMPLES = 200
DEFAULT_EVAL_SAMPLES = 1000
DEBUG_SAMPLES = 64  # samples run through the per-layer debugger: enough for stable per-layer statistics
# Calibration values beyond this magnitude are refused: a float32 square overflows past 1.8e19, so a model's
# float arithmetic (and the int8 scales calibrated from it) cannot be trusted with them; no trained model sees them.
MAX_ABS_CALIBRATION_VALUE = 1e18


@dataclass
class QuantizeResult:
    tflite_bytes: bytes
    report: dict
    float_bytes: bytes | None = None  # the float .tflite it was quantized from (per-layer validation's baseline)
    keras_names: list | None = None  # the Keras model's layer names (tables name operators after them)


# ---------------------------------------------------------------------------------------------------------------
# Host inference of .tflite models (ai_edge_litert), reusable by other stages


def _interpreter(tflite_bytes: bytes, **options):
    """LiteRT's builtin kernels without the XNNPACK delegate, whose float requantization of int8 layers drifts
    from TFLite Micro (up to 4 output steps on MLPerf's AD model, against at most 1 without it)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with _native_stderr_captured() as log:
        try:
            interpreter = Interpreter(model_content=bytes(tflite_bytes), **options, experimental_op_resolver_type=
                                      OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as error:
            detail = " ".join((log.getvalue() or str(error)).split())[-240:]
            raise EdgekitError(f"the LiteRT interpreter cannot run this model: {detail}") from None
    return interpreter


def run_tflite(tflite_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run a single-input .tflite model on float samples; returns the first output, dequantized to float32.

    int8/uint8 inputs are quantized with the model's own scale and zero point (round, saturate), exactly as a
    device would be fed.
    """
    interpreter = _interpreter(tflite_bytes)
    if isinstance(x, (list, tuple)):
        return _run_multi_input(interpreter, x)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = np.asarray(x, dtype=np.float32)
    shape = tuple(inp["shape"][1:])
    if tuple(x.shape[1:]) != shape:
        raise EdgekitError(f"data has samples of shape {tuple(x.shape[1:])} but the model expects {shape}")
    results = []
    for sample in x:
        interpreter.set_tensor(inp["index"], quantize_array(sample[None], inp))
        interpreter.invoke()
        results.append(dequantize_array(interpreter.get_tensor(out["index"]), out)[0])
    return np.stack(results)


def _run_multi_input(interpreter, xs) -> np.ndarray:
    """Several inputs, in the model's input order (the converter keeps the traced function's argument order)."""
    inputs = interpreter.get_input_details()
    out = interpreter.get_output_details()[0]
    if len(inputs) != len(xs):
        raise EdgekitError(f"data has {len(xs)} inputs but the model takes {len(inputs)}")
    for inp, x in zip(inputs, xs):
        if tuple(x.shape[1:]) != tuple(inp["shape"][1:]):
            raise EdgekitError(f"data has samples of shape {tuple(x.shape[1:])} for input '{inp['name']}' but the "
                               f"model expects {tuple(inp['shape'][1:])}")
    results = []
    for i in range(len(xs[0])):
        for inp, x in zip(inputs, xs):
            interpreter.set_tensor(inp["index"], quantize_array(np.asarray(x[i:i + 1], np.float32), inp))
        interpreter.invoke()
        results.append(dequantize_array(interpreter.get_tensor(out["index"]), out)[0])
    return np.stack(results)


def _samples_of(calibration, i: int) -> list:
    """Sample i of every input, each with its batch axis: what a representative dataset yields."""
    if isinstance(calibration, (list, tuple)):
        return [a[i][None] for a in calibration]
    return [calibration[i][None]]


def _count(x) -> int:
    return len(x[0]) if isinstance(x, (list, tuple)) else len(x)


def quantize_array(x: np.ndarray, details: dict) -> np.ndarray:
    """float -> the tensor's dtype with its (scale, zero_point); float tensors pass through."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_array(q: np.ndarray, details: dict) -> np.ndarray:
    if np.dtype(details["dtype"]).kind == "f":
        return q.astype(np.float32)
    scale, zero_point = details["quantization"]
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, y=None, task: str = "classification",
                    x=None) -> dict:
    """Candidate (int8) vs reference (float) outputs: top-1 agreement (for the tasks that have a top-1), cosine
    similarity, RMSE; with labels, the accuracy of each (classification tasks); always the task's own metrics
    for each side (`task_metrics`: recall, RMSE/MAE/R², reconstruction error, AUC)."""
    from edgekit.tasks import CLASS_TASKS, agreement, task_metrics

    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, (ref * cand).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
    metrics = {
        "task": task,
        "top1_agreement": agreement(task, ref, cand),
        "task_metrics": {"float": task_metrics(task, ref, y, x), "int8": task_metrics(task, cand, y, x)},
        "cosine_similarity": float(np.mean(cosine)),
        "rmse": float(np.sqrt(np.mean((ref - cand) ** 2))),
        "max_abs_error": float(np.max(np.abs(ref - cand))),
    }
    if y is not None and task in CLASS_TASKS:
        metrics["reference_accuracy"] = metrics["task_metrics"]["float"].get("accuracy")
        metrics["candidate_accuracy"] = metrics["task_metrics"]["int8"].get("accuracy")
    return metrics


def _top1(outputs: np.ndarray) -> np.ndarray:
    if outputs.shape[1] == 1:  # one sigmoid unit: the class is the side of 0.5
        return (outputs[:, 0] > 0.5).astype(np.int64)
    return outputs.argmax(axis=1)


def accuracy(outputs: np.ndarray, y) -> float | None:
    """Top-1 accuracy of class scores against integer labels (None when the output is not class scores)."""
    flat = outputs.reshape(len(outputs), -1)
    if y is None or (flat.shape[1] > 1 and int(np.max(y)) >= flat.shape[1]):
        return None
    return float(np.mean(_top1(flat) == np.asarray(y)))


def evaluate_tflite(tflite_bytes: bytes, x: np.ndarray, y=None, reference_outputs=None) -> dict:
    """Run a .tflite on float samples: its outputs, accuracy (with labels) and agreement with reference outputs."""
    outputs = run_tflite(tflite_bytes, x)
    result = {"outputs": outputs, "accuracy": accuracy(outputs, y) if y is not None else None}
    if reference_outputs is not None:
        result.update(compare_outputs(reference_outputs, outputs))
    return result


# ---------------------------------------------------------------------------------------------------------------
# Quantization


def quantize(model_or_path, dataset=None, *, calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
             eval_samples: int | None = DEFAULT_EVAL_SAMPLES, per_layer: bool = True,
             quiet: bool = False, per_channel: bool = True, task: str | None = None,
             input_range=None) -> QuantizeResult:
    """Quantize to a fully int8 .tflite and report float vs int8 on held-out data.

    model_or_path: a path (.keras, .h5, SavedModel folder, .tflite), a LoadedModel or a Keras model.
    dataset: a Dataset or a path for load_dataset. It may be None for a .tflite that is int8 inside with float
    ends: that one only loses its boundary QUANTIZE/DEQUANTIZE ops (then data only adds the float/int8 report).
    A weight-only quantized .tflite (int8 weights, float activations) gets float weights back, then is quantized.
    per_channel=False gives convolution and dense weights one scale per tensor instead of one per output channel
    (Keras models only; a little less flash for the scales, usually a little less accuracy).
    """
    from edgekit.console import info, progress

    if calibration_samples < 1:
        raise EdgekitError(f"--calibration-samples is {calibration_samples}; expected at least 1")
    loaded = _loaded(model_or_path)
    if loaded.note:
        info(f"note: {loaded.note}", quiet)
    kind = _tflite_kind(loaded) if loaded.framework == "tflite" else "keras"
    if not per_channel and loaded.framework == "tflite":
        raise EdgekitError(f"{loaded.name} is a .tflite: per-tensor weights (per_channel off) need the Keras model")
    if kind == "float_ends":
        return _quantize_float_ends(loaded, dataset, eval_samples, quiet, task, input_range)
    if kind == "weight_only":
        info(f"note: {loaded.name} has int8 weights but float activations (weight-only quantization): its weights "
             "are dequantized to float, then the whole model is quantized to int8", quiet)
    if dataset is None:
        raise EdgekitError(f"{loaded.name} has float activations: calibration data is needed to quantize them "
                           "(--data: .npz, .npy or a folder of samples)")
    from edgekit.tasks import check_task

    data = _dataset_for(loaded, dataset, check_task(task), input_range)
    model_task = _task_of(loaded, data, task)
    calibration = representative_subset(data.x_train, calibration_samples)
    _check_calibration_range(calibration, data.source)
    x_test, y_test = _eval_subset(data.x_test, data.y_test, eval_samples)

    with progress(quiet) as bar:
        task = bar.add_task("quantizing", total=4)
        if loaded.framework == "tflite":
            float_bytes = bytes(loaded.model)
            source = dequantize_weights(float_bytes, loaded.name) if kind == "weight_only" else float_bytes
            int8_bytes = _quantize_tflite(source, calibration)
            method = "ai-edge-quantizer static_wi8_ai8"
            if kind == "weight_only":
                method += " (weight-only int8 weights dequantized first)"
        else:
            from edgekit.convert_child import convert_keras

            float_bytes, int8_bytes, keras_layers = convert_keras(
                loaded, calibration, _first(x_test, DEBUG_SAMPLES) if per_layer else None, per_channel)
            bar.advance(task)
            method = "TFLite converter, full integer (TFLITE_BUILTINS_INT8)" + ("" if per_channel else
                                                                                ", per-tensor weights")
        bar.advance(task)
        graph = _check_fully_int8(int8_bytes, loaded.name)
        _check_scales(graph, data.source)
        float_out = loaded.predict(x_test)
        if not np.isfinite(float_out).all():
            raise EdgekitError(f"the float model {loaded.name} gives NaN or infinite outputs on {data.source}; "
                               "expected data in the range the model was trained on (nothing was written)")
        bar.advance(task)
        int8_out = run_tflite(int8_bytes, x_test)
        bar.advance(task)
        layers = None
        if per_layer:
            if loaded.framework == "tflite":
                layers = _layer_errors_aeq(source, int8_bytes, x_test[:DEBUG_SAMPLES])
            else:
                layers = keras_layers

    report = _report(loaded, method, graph, float_bytes, int8_bytes, _count(calibration),
                     compare_outputs(float_out, int8_out, y_test, model_task, x_test), y_test is not None,
                     _count(x_test))
    report.update({
        "preprocessing": data.preprocessing,
        "layers": layers,
        # local: each int8 op vs its float twin fed the same inputs (TF's QuantizationDebugger);
        # cumulative: each int8 tensor vs the same-named tensor of the float model run end to end
        "layer_error": None if layers is None else ("cumulative" if loaded.framework == "tflite" else "local"),
    })
    keras_names = None
    if loaded.framework != "tflite":
        from edgekit.layer_names import keras_layer_names

        keras_names = keras_layer_names(loaded.model)
    _name_layers(layers, graph, keras_names)
    report["worst_layers"] = _worst(layers)
    return QuantizeResult(int8_bytes, report, float_bytes, keras_names)


def _name_layers(layers, graph, keras_names) -> None:
    """Each per-layer row gets the Keras layer its tensor belongs to (edgekit.layer_names)."""
    if not layers:
        return
    from edgekit.layer_names import keras_layer_of

    for row in layers:
        row["layer"] = keras_layer_of(row.get("tensor") or "", keras_names, row.get("op"))


def _first(x, n: int):
    """The first n samples of one input's array or of every input's array (multi-input models)."""
    return [a[:n] for a in x] if isinstance(x, (list, tuple)) else x[:n]


def _loaded(model_or_path):
    from edgekit.models import LoadedModel, load_model, wrap_keras_model

    if isinstance(model_or_path, LoadedModel):
        return model_or_path
    if hasattr(model_or_path, "predict") and hasattr(model_or_path, "inputs"):
        return wrap_keras_model(model_or_path)
    return load_model(model_or_path)


def last_activation(loaded) -> str | None:
    from edgekit.tasks import graph_last_activation, keras_last_activation

    if loaded.framework == "tflite":
        from edgekit.tflite_model import parse_tflite

        return graph_last_activation(parse_tflite(loaded.model, loaded.name))
    if loaded.framework in ("keras3", "tf_keras"):
        return keras_last_activation(loaded.model)
    return None


def _task_of(loaded, data, task):
    """The user's --task, else what the labels were read as, else what the model's output says."""
    from edgekit.tasks import detect_task

    labels = data.y_test if data.has_labels else None  # arrays given in memory (from_arrays) carry no task
    return task or data.task or detect_task(tuple(loaded.input_shape), loaded.output_shape, labels,
                                            last_activation(loaded))


def _dataset_for(loaded, dataset, task=None, input_range=None):
    """The Dataset (read from a path if needed), checked against the model's input shape."""
    from edgekit.data import Dataset, check_labels, load_dataset

    output_shape = loaded.output_shape
    if len(loaded.input_shapes) > 1:
        from edgekit.data import load_multi_input

        data = dataset if isinstance(dataset, Dataset) else load_multi_input(
            dataset, loaded.input_names, loaded.input_shapes, output_shape=output_shape, task=task,
            last_activation=last_activation(loaded))
        if data.sample_shape != [tuple(s) for s in loaded.input_shapes]:
            raise EdgekitError(f"data has samples of shapes {data.sample_shape} but the model expects inputs of "
                               f"shapes {[tuple(s) for s in loaded.input_shapes]}")
        return data
    shape = tuple(loaded.input_shape)
    if isinstance(dataset, Dataset):
        data = dataset
        if (task or data.task) in (None, "classification", "binary"):
            check_labels(data, output_shape)
    else:
        data = load_dataset(dataset, input_shape=shape, output_shape=output_shape, task=task,
                            last_activation=last_activation(loaded), input_range=input_range)
    if data.sample_shape != shape:
        raise EdgekitError(f"data has samples of shape {data.sample_shape} but the model expects input of shape "
                           f"{shape}")
    return data


def _eval_subset(x, y, eval_samples):
    if eval_samples is not None and _count(x) > eval_samples:
        return _first(x, eval_samples), None if y is None else y[:eval_samples]
    return x, y


def _report(loaded, method, graph, float_bytes, int8_bytes, calibration_samples, metrics, labels, eval_samples):
    """The report keys every quantization shares; metrics is compare_outputs(...) or None without data."""
    metrics = dict(metrics or {key: None for key in ("top1_agreement", "cosine_similarity", "rmse",
                                                        "max_abs_error", "task", "task_metrics")})
    float_acc, int8_acc = metrics.pop("reference_accuracy", None), metrics.pop("candidate_accuracy", None)
    inp, out = graph.input_tensors()[0], graph.output_tensors()[0]
    return {
        "model": loaded.name,
        "framework": loaded.framework,
        "note": loaded.note,
        "method": method,
        "calibration_samples": int(calibration_samples),
        "eval_samples": int(eval_samples),
        "labels": labels,
        "float_accuracy": float_acc,
        "int8_accuracy": int8_acc,
        "accuracy_drop_points": None if float_acc is None or int8_acc is None else 100 * (float_acc - int8_acc),
        **metrics,
        "float_bytes": len(float_bytes),
        "int8_bytes": len(int8_bytes),
        "size_ratio": len(float_bytes) / len(int8_bytes),
        "input": _tensor_info(inp),
        "output": _tensor_info(out),
        "inputs": [_tensor_info(t) for t in graph.input_tensors()],
        "outputs": [_tensor_info(t) for t in graph.output_tensors()],
        "ops": graph.opcodes,
    }


REMOVED_FLOAT_IO = "removed float QUANTIZE/DEQUANTIZE ends (already int8 inside, no calibration)"


def _quantize_float_ends(loaded, dataset, eval_samples, quiet, task=None, input_range=None) -> QuantizeResult:
    """An int8 model with float ends: cut the ends off; with data, check the outputs did not move."""
    from edgekit.console import info

    float_bytes = bytes(loaded.model)
    int8_bytes = remove_float_io(float_bytes, loaded.name)
    graph = _check_fully_int8(int8_bytes, loaded.name)
    info(f"note: {loaded.name} is already int8 inside: removed its float input/output QUANTIZE/DEQUANTIZE ops "
         "(input and output are now int8, with the scales they had)", quiet)
    metrics, labels, count = None, False, 0
    if dataset is not None:
        data = _dataset_for(loaded, dataset, task, input_range)
        x, y = _eval_subset(*data.all_samples(), eval_samples)  # nothing is calibrated: every sample evaluates
        metrics = compare_outputs(run_tflite(float_bytes, x), run_tflite(int8_bytes, x), y,
                                  _task_of(loaded, data, task), x)
        labels, count = y is not None, len(x)
    report = _report(loaded, REMOVED_FLOAT_IO, graph, float_bytes, int8_bytes, 0, metrics, labels, count)
    report.update({"layers": None, "layer_error": None, "worst_layers": None})
    return QuantizeResult(int8_bytes, report)


def representative_subset(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n samples spread over the whole training set (a fixed shuffle), not just its first rows (the same rows of
    every input of a multi-input model)."""
    if _count(x) <= n:
        return x
    rows = np.sort(np.random.default_rng(seed).choice(_count(x), n, replace=False))
    return [a[rows] for a in x] if isinstance(x, (list, tuple)) else x[rows]


def _tensor_info(t) -> dict:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
            "scale": float(t.scale[0]) if t.scale.size else None,
            "zero_point": int(t.zero_point[0]) if t.zero_point.size else None}


def _worst(layers, count: int = 5):
    if not layers:
        return None
    ranked = sorted((l for l in layers if l.get("sqnr_db") is not None), key=lambda l: l["sqnr_db"])
    return [{"index": l["index"], "op": l["op"], "layer": l.get("layer"), "tensor": l["tensor"], "sqnr_db": l["sqnr_db"]}
            for l in ranked[:count]]


def _tflite_kind(loaded) -> str:
    """"float", "float_ends" (int8 inside, float input/output) or "weight_only"; anything else is refused."""
    from edgekit.tflite_model import parse_tflite

    graph = parse_tflite(loaded.model, loaded.name)
    if graph.is_fully_int8:
        raise EdgekitError(f"{loaded.name} is already fully int8; use it directly with analyze/build "
                           "(quantize expects a float model)")
    if len(graph.inputs) != 1:
        raise EdgekitError(f"{loaded.name} has {len(graph.inputs)} inputs; edgekit handles single-input models")
    if float_io_boundary(graph) is not None:
        return "float_ends"
    if not any(t.dtype in ("int8", "uint8") and t.is_constant for t in graph.tensors):
        return "float"
    if _weight_only_constants(graph) is None:
        first = graph.input_tensors()[0]
        raise EdgekitError(f"{loaded.name} mixes int8 and {first.dtype} activations; expected a float model, one "
                           "quantized with int8 activations, or one with int8 weights only")
    return "weight_only"


def _weight_only_constants(graph) -> list | None:
    """The int8 constants of a weight-only quantized model (float activations), or None if it is not one."""
    constants = [t for t in graph.tensors if t.dtype == "int8" and t.is_constant and t.data is not None]
    activations = [t for t in graph.tensors if not t.is_constant and not t.is_variable]
    if any(t.dtype in ("int8", "uint8") for t in activations) or any(t.scale.size == 0 for t in constants):
        return None
    if any(t.dtype == "uint8" and t.is_constant for t in graph.tensors):
        return None
    return constants


def dequantize_weights(tflite_bytes: bytes, name: str = "model") -> bytes:
    """A weight-only quantized model with its int8 weights turned back into float32: (q - zero_point) * scale.

    Quantizing it again (per channel) moves each weight by at most half a step of its new scale: the float
    weights the weight-only file was made from are gone, these are the closest we have.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from edgekit.tflite_model import parse_tflite

    graph = parse_tflite(tflite_bytes, name)
    constants = _weight_only_constants(graph)
    if not constants:
        raise EdgekitError(f"{name} has no int8 weights around float activations; expected a weight-only "
                           "quantized model")
    model = _model_object(tflite_bytes)
    tensors = model.subgraphs[0].tensors
    users = Counter(int(t.buffer) for subgraph in model.subgraphs for t in subgraph.tensors)
    for t in constants:
        shape = [1] * t.data.ndim
        if t.scale.size > 1:
            shape[t.quantized_dimension] = t.scale.size
        values = (t.data.astype(np.float32) - t.zero_point.reshape(shape)) * t.scale.reshape(shape)
        tensor = tensors[t.index]
        if users[int(tensor.buffer)] > 1:  # shared with another tensor: give this one its own buffer
            model.buffers.append(schema.BufferT())
            tensor.buffer = len(model.buffers) - 1
        model.buffers[tensor.buffer].data = np.frombuffer(values.astype("<f4").tobytes(), dtype=np.uint8)
        tensor.type, tensor.quantization = schema.TensorType.FLOAT32, None
    return _packed(model)


def _check_calibration_range(x: np.ndarray, source: str) -> None:
    """Refuse finite but absurd calibration data (3e38 everywhere gave an input scale of 1e36 and inf inside)."""
    arrays = x if isinstance(x, (list, tuple)) else [x]
    peak = max((float(np.max(np.abs(a))) if a.size else 0.0) for a in arrays)
    if peak > MAX_ABS_CALIBRATION_VALUE:
        raise EdgekitError(f"calibration data {source} has values up to {peak:.3g}; expected magnitudes of at most "
                           f"{MAX_ABS_CALIBRATION_VALUE:.0e} (float32 arithmetic overflows beyond), as the model "
                           "was trained on")


def _check_scales(graph, source: str) -> None:
    """Every scale calibration produced must be a positive float32 whose int8 range (255 steps) is finite."""
    limit = float(np.finfo(np.float32).max) / 256
    for t in graph.tensors:
        if t.scale.size and not np.all((t.scale > 0) & (t.scale < limit)):
            bad = float(t.scale[~((t.scale > 0) & (t.scale < limit))][0])
            raise EdgekitError(f"calibration on {source} gave tensor '{t.name}' a quantization scale of {bad:g}, "
                               "which TFLite Micro cannot run; expected calibration data in the range the model "
                               "was trained on (nothing was written)")


def _check_fully_int8(tflite_bytes: bytes, name: str):
    from edgekit.tflite_model import parse_tflite

    graph = parse_tflite(tflite_bytes, name)
    if not graph.is_fully_int8:
        floats = [f"{t.name} ({t.dtype})" for t in graph.tensors if t.dtype.startswith("float")][:3]
        ends = [t.dtype for t in graph.input_tensors() + graph.output_tensors()]
        raise EdgekitError(f"quantizing {name} did not give a fully int8 model (input/output {ends}, float tensors "
                           f"{floats}); expected every operator to have an int8 kernel")
    return graph


@contextmanager
def _native_stderr_captured():
    """Capture what TensorFlow's C++ code prints on file descriptor 2 (calibration chatter), for error messages."""
    saved = os.dup(2)
    log = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings(), redirect_stderr(log):  # Python-level chatter too (tqdm bars)
                warnings.simplefilter("ignore")
                yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.write(sink.read().decode("utf-8", "replace"))


def _converter(frozen, calibration=None, per_channel: bool = True):
    from edgekit._tf import tensorflow

    tf = tensorflow()
    trackable = getattr(frozen, "_edgekit_trackable", None)  # fused LSTMs: the SavedModel route keeps them
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], *([trackable] if trackable else []))
    if not per_channel:
        converter._experimental_disable_per_channel = True
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (_samples_of(calibration, i) for i in range(_count(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def _convert(frozen, calibration=None, per_channel: bool = True) -> bytes:
    """Float conversion without `calibration`, full-int8 conversion with it."""
    converter = _converter(frozen, calibration, per_channel)
    with _native_stderr_captured() as log:
        try:
            return bytes(converter.convert())
        except Exception as error:
            detail = _converter_error(str(error) + "\n" + log.getvalue())
            what = "int8" if calibration is not None else "float"
            raise EdgekitError(f"the TFLite converter cannot make a {what} model: {detail}") from None


def _converter_error(text: str) -> str:
    """The most telling line of a converter failure (an op without an int8 kernel, usually)."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for key in ("error:", "Error", "not supported", "failed"):
        for line in lines:
            if key in line:
                return line[:300]
    return (lines[0] if lines else "unknown error")[:300]


# ---------------------------------------------------------------------------------------------------------------
# Float .tflite through ai-edge-quantizer


def _prepare_for_aeq(tflite_bytes: bytes) -> bytes:
    """Give ai-edge-quantizer what it needs from an older flatbuffer.

    It reads operators from `builtin_code` only (older files carry them in `deprecated_builtin_code`, which made
    it see every FULLY_CONNECTED as an ADD) and it calibrates through a signature, which older files lack.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = _model_object(tflite_bytes)
    for code in model.operatorCodes:
        code.builtinCode = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if not model.signatureDefs:
        subgraph = model.subgraphs[0]

        def tensor_map(index):
            entry = schema.TensorMapT()
            name = subgraph.tensors[index].name
            entry.name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            entry.tensorIndex = int(index)
            return entry

        signature = schema.SignatureDefT()
        signature.inputs = [tensor_map(i) for i in subgraph.inputs]
        signature.outputs = [tensor_map(i) for i in subgraph.outputs]
        signature.signatureKey = "serving_default"
        signature.subgraphIndex = 0
        model.signatureDefs = [signature]
    return _packed(model)


def _quantize_tflite(float_bytes: bytes, calibration) -> bytes:
    """ai-edge-quantizer's static int8 recipe, calibrated on the true min/max over all samples.

    Its default keeps a moving average (factor 0.95) of per-sample ranges, which mostly remembers the last
    ~20 samples: on MLPerf's AD model that clipped activations to a fifth of their range (cosine 0.98 against
    the float model where the TFLite converter's min/max gives 0.9999).
    """
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

    with _native_stderr_captured() as log:
        try:
            prepared = _prepare_for_aeq(float_bytes)
            signature = _interpreter(prepared).get_signature_list()
            key = next(iter(signature))
            name = signature[key]["inputs"][0]
            manager = recipe_manager.RecipeManager()
            manager.load_quantization_recipe(recipe.static_wi8_ai8())
            calibration_run = calibrator.Calibrator(prepared, qsv_update_func=_min_max_update)
            calibration_run.calibrate({key: [{name: sample[None]} for sample in calibration]}, manager)
            q = quantizer.Quantizer(prepared, recipe.static_wi8_ai8())
            result = q.quantize(calibration_run.get_model_qsvs(), enable_progress_bar=False,
                                enable_progress_report=False)
        except EdgekitError:
            raise
        except Exception as error:
            detail = _converter_error(str(error) + "\n" + log.getvalue())
            raise EdgekitError(f"ai-edge-quantizer cannot quantize this model: {detail}") from None
    return _inline_buffers(bytes(result.quantized_model))


def _min_max_update(qsv: dict, new: dict) -> dict:
    if not qsv:
        return new
    return {**new, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def _inline_buffers(tflite_bytes: bytes) -> bytes:
    """Move constants stored after the flatbuffer (buffer offset/size, as ai-edge-quantizer writes large ones) back
    inside it: TFLite Micro, our parser and the native backend read only inline buffer data."""
    model = _model_object(tflite_bytes)
    outside = [b for b in model.buffers or [] if b.offset > 1]
    if not outside:
        return tflite_bytes
    for buffer in outside:
        buffer.data = np.frombuffer(tflite_bytes[buffer.offset:buffer.offset + buffer.size], dtype=np.uint8)
        buffer.offset = buffer.size = 0
    return _packed(model)


# ---------------------------------------------------------------------------------------------------------------
# Already-quantized .tflite with float ends: remove the boundary QUANTIZE/DEQUANTIZE ops


def float_io_boundary(graph) -> tuple[list, list] | None:
    """The (input, output) boundary operators whose removal leaves a fully int8 model, or None.

    A converter run without int8 inference types quantizes everything inside but keeps a float input (then a
    QUANTIZE to int8) and a float output (after a DEQUANTIZE from int8); uint8 ends are QUANTIZE ops both ways.
    The int8 tensors next to them already carry the scale and zero point a device must use.
    """
    ins, outs = [], []
    for index in graph.inputs:
        if graph.tensors[index].dtype == "int8":
            continue
        users = graph.consumers(index)
        if len(users) != 1 or users[0].opcode != "QUANTIZE" or graph.tensors[users[0].outputs[0]].dtype != "int8":
            return None
        ins.append(users[0])
    for index in graph.outputs:
        if graph.tensors[index].dtype == "int8":
            continue
        op = graph.producer(index)
        if (op is None or op.opcode not in ("QUANTIZE", "DEQUANTIZE") or graph.consumers(index)
                or graph.tensors[op.inputs[0]].dtype != "int8"):
            return None
        outs.append(op)
    if not ins and not outs:
        return None
    removed = {t for op in ins + outs for t in op.inputs + op.outputs} - {
        op.outputs[0] for op in ins} - {op.inputs[0] for op in outs}
    others = [t for i, t in enumerate(graph.tensors) if i not in removed]
    if any(t.dtype.startswith("float") or t.dtype == "uint8" for t in others):
        return None  # float inside too (weight-only quantization): nothing to remove makes it int8
    return ins, outs


def remove_float_io(tflite_bytes: bytes, name: str = "model") -> bytes:
    """The same model with int8 input and output: boundary QUANTIZE/DEQUANTIZE ops and their float tensors removed.

    Graph surgery on the flatbuffer object API: the int8 tensor after each input QUANTIZE becomes the graph's
    input, the int8 tensor before each output DEQUANTIZE its output; tensor indices (operators, signatures) and
    operator codes are renumbered. Nothing inside the model changes, so its int8 arithmetic is bit-identical.
    """
    from edgekit.tflite_model import parse_tflite

    graph = parse_tflite(tflite_bytes, name)
    boundary = float_io_boundary(graph)
    if boundary is None:
        raise EdgekitError(f"{name} has no float input/output QUANTIZE/DEQUANTIZE ops around an int8 model; "
                           "expected an int8 model with float ends")
    ins, outs = boundary
    model = _model_object(tflite_bytes)
    subgraph = model.subgraphs[0]
    to_int8 = {op.inputs[0]: op.outputs[0] for op in ins} | {op.outputs[0]: op.inputs[0] for op in outs}
    inputs = [to_int8.get(int(i), int(i)) for i in subgraph.inputs]
    outputs = [to_int8.get(int(i), int(i)) for i in subgraph.outputs]
    dropped_ops = {op.index for op in ins + outs}
    operators = [op for i, op in enumerate(subgraph.operators) if i not in dropped_ops]
    used = set(inputs) | set(outputs) | {int(t) for op in operators for t in list(op.inputs) + list(op.outputs)
                                         if t >= 0}
    used |= {int(t) for op in operators for t in (op.intermediates if op.intermediates is not None else [])}
    kept = [i for i in range(len(subgraph.tensors)) if i in used]
    new_index = {old: new for new, old in enumerate(kept)}

    def renumber(indices):
        return [new_index[int(t)] if t >= 0 else -1 for t in indices]

    codes = sorted({int(op.opcodeIndex) for op in operators})
    new_code = {old: new for new, old in enumerate(codes)}
    for op in operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None:
            op.intermediates = renumber(op.intermediates)
        op.opcodeIndex = new_code[int(op.opcodeIndex)]
    model.operatorCodes = [model.operatorCodes[i] for i in codes]
    subgraph.operators = operators
    subgraph.tensors = [subgraph.tensors[i] for i in kept]
    subgraph.inputs, subgraph.outputs = renumber(inputs), renumber(outputs)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == 0:
            for entry in (signature.inputs or []) + (signature.outputs or []):
                entry.tensorIndex = new_index[to_int8.get(int(entry.tensorIndex), int(entry.tensorIndex))]
    return _packed(model)


def _model_object(tflite_bytes: bytes):
    """The flatbuffer as a mutable object tree (tflite_micro's generated schema), for graph surgery."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytes(tflite_bytes), 0))


def _packed(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---------------------------------------------------------------------------------------------------------------
# Per-layer error


def _sqnr_db(signal_power: float, noise_power: float) -> float | None:
    if noise_power <= 0:
        return None if signal_power <= 0 else 99.0
    return float(10 * np.log10(max(signal_power, 1e-30) / noise_power))


def _layer_errors_debugger(frozen, calibration, x_debug) -> list[dict] | None:
    """Per int8 operator: its output against the float op fed with the same (dequantized) inputs.

    TensorFlow's QuantizationDebugger builds a model where each quantized op is shadowed by its float twin; we
    collect, per op, the error power against the power of the int8 output (-> SQNR in dB), the RMSE and the RMSE in units of the
    output's quantization step (about 0.29 is pure rounding; much more means clipping or accumulated error).
    """
    from edgekit._tf import tensorflow

    tf = tensorflow()
    converter = _converter(frozen, calibration)
    converter.inference_input_type = tf.float32  # the debugger feeds float samples
    converter.inference_output_type = tf.float32
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={
            "signal_power": lambda f, q, s, zp: float(np.mean([
                np.mean(np.square((np.asarray(a, np.float64) - zp) * s)) for a in q])),
        })
    dataset = lambda: (_samples_of(x_debug, i) for i in range(_count(x_debug)))
    with _native_stderr_captured():
        try:
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset,
                                                                 debug_options=options)
            debugger.run()
            text = io.StringIO()
            debugger.layer_statistics_dump(text)
        except Exception:
            return None  # the per-layer view is a bonus; the model itself converted fine
    return _parse_layer_dump(text.getvalue())


def _parse_layer_dump(csv_text: str) -> list[dict]:
    import csv

    layers = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        signal, noise = float(row["signal_power"]), float(row["mean_squared_error"])
        scale = float(row["scale"])
        rmse = float(np.sqrt(noise))
        layers.append({
            "index": len(layers), "op": row["op_name"], "tensor": row["tensor_name"],
            "sqnr_db": _sqnr_db(signal, noise), "rmse": rmse,
            "rmse_steps": rmse / scale if scale > 0 else None,
            "max_abs_error": float(row["max_abs_error"]),
        })
    return layers


def _layer_errors_aeq(float_bytes: bytes, int8_bytes: bytes, x_debug) -> list[dict] | None:
    """Per int8 tensor, against the float model's tensor of the same name (ai-edge-quantizer keeps names)."""
    from edgekit.tflite_model import parse_tflite

    def all_tensors(model_bytes):
        interpreter = _interpreter(model_bytes, experimental_preserve_all_tensors=True)
        inp = interpreter.get_input_details()[0]
        names = {d["name"]: d for d in interpreter.get_tensor_details()}
        sums = {}
        for sample in x_debug:
            interpreter.set_tensor(inp["index"], quantize_array(sample[None], inp))
            interpreter.invoke()
            for name, d in names.items():
                try:
                    value = interpreter.get_tensor(d["index"])
                except ValueError:
                    continue
                sums.setdefault(name, []).append(dequantize_array(value, d))
        return sums

    try:
        float_values = all_tensors(_prepare_for_aeq(float_bytes))
        int8_values = all_tensors(int8_bytes)
    except Exception:
        return None
    graph = parse_tflite(int8_bytes)
    layers = []
    for op in graph.operators:
        t = graph.tensors[op.outputs[0]]
        if t.name not in float_values or t.name not in int8_values:
            continue
        f = np.concatenate([v.ravel() for v in float_values[t.name]]).astype(np.float64)
        q = np.concatenate([v.ravel() for v in int8_values[t.name]]).astype(np.float64)
        if f.shape != q.shape:
            continue
        noise = float(np.mean((f - q) ** 2))
        scale = float(t.scale[0]) if t.scale.size else 0.0
        layers.append({"index": len(layers), "op": op.opcode, "tensor": t.name,
                       "sqnr_db": _sqnr_db(float(np.mean(f ** 2)), noise), "rmse": float(np.sqrt(noise)),
                       "rmse_steps": float(np.sqrt(noise)) / scale if scale > 0 else None,
                       "max_abs_error": float(np.max(np.abs(f - q)))})
    return layers or None
