"""LiteRT variants of a float model for phones and Linux boards: make, measure, choose.

fp32, fp16 (weights in float16: the GPU delegate's format), dynamic (int8 weights, activations quantized on the
fly by the CPU kernels), int8 (fully int8, ends included: what NPUs, DSPs and edgekit's microcontroller backends
run) and int8-float-io (int8 inside, float input and output: what apps usually feed). Each is measured against the
float model on held-out data (the task's accuracy with labels; top-1 agreement, cosine and RMSE always), timed
with LiteRT's default CPU path (XNNPACK) at 1 and 2 threads on this computer, and labelled with the accelerators
LiteRT documents it for.

Which tool makes each variant was decided by measurement (benchmarks/mobile_quantizers.py, README "Phones and
Linux boards"): the TFLite converter where there is a Keras source, ai-edge-quantizer for a float .tflite. The int8
variant is `edgekit.quantize.quantize` itself, so its figures are those `edgekit quantize` prints.

The choice: the smallest variant whose metric is within the board's tolerance (`[mobile] tolerance_points`,
default 1 point) of float, preferring those the board's accelerator (`[mobile] accelerator`) runs; `--variant`
overrides.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from edgekit.errors import EdgekitError, UsageError

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int8-float-io")
# From LiteRT's documentation of its delegates: the GPU delegate computes in fp16/fp32, NPU and DSP delegates need
# full-integer models (int8 inside; with float ends the QUANTIZE/DEQUANTIZE stay on the CPU), XNNPACK runs all.
ACCELERATORS = {"fp32": ("xnnpack", "gpu"), "fp16": ("xnnpack", "gpu"), "dynamic": ("xnnpack",),
                "int8": ("xnnpack", "npu"), "int8-float-io": ("xnnpack", "npu")}
ACCELERATOR_NAMES = {"xnnpack": "XNNPACK (CPU)", "gpu": "GPU delegate", "npu": "NPU/DSP"}
DEFAULT_TOLERANCE_POINTS = 1.0
GENERATED_SAMPLES = 200  # inputs generated for a model without data: calibration and comparison
TIMED_RUNS = 30
WARMUP_RUNS = 3
RULE = ("the smallest variant whose {metric} is within {tolerance:g} point(s) of float, preferring those "
        "{board}'s accelerator ({accelerator}) runs; --variant overrides")


@dataclass
class Variant:
    name: str
    tflite_bytes: bytes
    method: str
    accelerators: tuple
    metrics: dict = field(default_factory=dict)  # metric, value, float_value, drop_points, cosine, rmse, ...
    latency_ms: dict = field(default_factory=dict)  # threads -> median ms (LiteRT, XNNPACK, this host)
    quantize_result: object = field(default=None, repr=False)  # the int8 variant's QuantizeResult

    @property
    def bytes(self) -> int:
        return len(self.tflite_bytes)

    def row(self) -> dict:
        return {"variant": self.name, "bytes": self.bytes, "method": self.method, **self.metrics,
                "host_latency_ms": {str(k): v for k, v in self.latency_ms.items()},
                "accelerators": [ACCELERATOR_NAMES[a] for a in self.accelerators]}


def check_variant(name: str | None) -> str | None:
    if name is not None and name not in VARIANTS:
        raise UsageError(f"unknown variant '{name}'; expected one of: {', '.join(VARIANTS)}")
    return name


# -- making ---------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """The float model, its evaluation inputs (held-out data or generated) and its float outputs on them."""

    loaded: object
    calibration: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray | None
    float_outputs: np.ndarray
    dataset: object  # what quantize() is given (the Dataset), so the int8 variant is edgekit quantize's
    inputs: str  # "held-out data (N samples)" or "generated inputs (...)"


def load_source(model, data=None, *, calibration_samples: int | None = None, eval_samples: int | None = None,
                seed: int = 0) -> Source:
    """The float model and what every variant is measured on."""
    from edgekit.data import Dataset
    from edgekit.quantize import (DEFAULT_CALIBRATION_SAMPLES, DEFAULT_EVAL_SAMPLES, _dataset_for, _eval_subset,
                                  _loaded, _tflite_kind, representative_subset)

    loaded = _loaded(model)
    if loaded.framework == "tflite" and _tflite_kind(loaded) != "float":
        raise EdgekitError(f"{loaded.name} is already quantized; the variants are made from a float model "
                           "(a Keras model, SavedModel or float .tflite)")
    calibration_samples = calibration_samples or DEFAULT_CALIBRATION_SAMPLES
    eval_samples = eval_samples or DEFAULT_EVAL_SAMPLES
    if data is not None:
        dataset = _dataset_for(loaded, data)
        inputs = "held-out data"
    else:
        # no data (MLPerf Tiny's float models come without theirs): seeded standard-normal inputs, said as such
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((2 * GENERATED_SAMPLES, *loaded.input_shape)).astype(np.float32)
        dataset = Dataset(x[:GENERATED_SAMPLES], None, x[GENERATED_SAMPLES:], None, source="generated inputs")
        inputs = "generated inputs (seeded standard normal)"
    calibration = representative_subset(dataset.x_train, calibration_samples)
    x_eval, y_eval = _eval_subset(dataset.x_test, dataset.y_test, eval_samples)
    float_outputs = loaded.predict(x_eval)
    return Source(loaded, calibration, x_eval, y_eval, float_outputs, dataset,
                  f"{inputs}, {len(x_eval)} samples")


def make_variant(name: str, source: Source, *, calibration_samples: int | None = None,
                 eval_samples: int | None = None) -> Variant:
    """One variant's .tflite, made by the tool measured best for it (see the module docstring)."""
    check_variant(name)
    loaded = source.loaded
    if name == "int8":
        from edgekit.quantize import quantize

        kwargs = {k: v for k, v in (("calibration_samples", calibration_samples), ("eval_samples", eval_samples))
                  if v is not None}
        result = quantize(loaded, source.dataset, per_layer=False, quiet=True, **kwargs)
        return Variant(name, result.tflite_bytes, result.report["method"], ACCELERATORS[name],
                       metrics={"int8_report": _int8_summary(result.report)}, quantize_result=result)
    if loaded.framework == "tflite":
        data, method = _aeq_variant(name, bytes(loaded.model), source.calibration, loaded.name)
    else:
        data, method = _converter_variant(name, loaded, source.calibration)
    return Variant(name, data, method, ACCELERATORS[name])


def _int8_summary(report: dict) -> dict:
    return {k: report.get(k) for k in ("float_accuracy", "int8_accuracy", "top1_agreement", "cosine_similarity",
                                         "rmse", "int8_bytes", "eval_samples")}


def _converter_variant(name: str, loaded, calibration) -> tuple[bytes, str]:
    """fp32, fp16, dynamic and int8-float-io from the Keras model with the TFLite converter."""
    from edgekit._tf import tensorflow
    from edgekit.quantize import _converter_error, _native_stderr_captured

    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.frozen_function(batch=1)])
    method = "TFLite converter"
    if name == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        method += ", float16 weights"
    elif name == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        method += ", dynamic range (int8 weights)"
    elif name == "int8-float-io":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample[None]] for sample in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        method += ", full integer with float input/output"
    with _native_stderr_captured() as log:
        try:
            return bytes(converter.convert()), method
        except Exception as error:
            detail = _converter_error(str(error) + "\n" + log.getvalue())
            raise EdgekitError(f"the TFLite converter cannot make the {name} variant: {detail}") from None


def _aeq_variant(name: str, float_bytes: bytes, calibration, model_name: str) -> tuple[bytes, str]:
    """fp32 (the file), fp16 and dynamic from a float .tflite with ai-edge-quantizer."""
    if name == "fp32":
        return float_bytes, "the float .tflite as given"
    if name == "int8-float-io":
        raise EdgekitError(f"the int8-float-io variant of {model_name} needs its Keras model (the TFLite converter "
                           "keeps float ends; ai-edge-quantizer's static recipe makes them int8); give the .keras/.h5 "
                           "or SavedModel, or use --variant int8")
    from ai_edge_quantizer import quantizer, recipe, recipe_manager
    from ai_edge_quantizer.recipe import AlgorithmName, TFLOperationName

    from edgekit.quantize import _converter_error, _inline_buffers, _native_stderr_captured, _prepare_for_aeq

    if name == "fp16":
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                       algorithm_key=AlgorithmName.FLOAT_CASTING)
        chosen, method = manager.get_quantization_recipe(), "ai-edge-quantizer, float16 weights (float casting)"
    else:
        chosen, method = recipe.dynamic_wi8_afp32(), "ai-edge-quantizer dynamic_wi8_afp32"
    with _native_stderr_captured() as log:
        try:
            result = quantizer.Quantizer(_prepare_for_aeq(float_bytes), chosen).quantize(
                enable_progress_bar=False, enable_progress_report=False)
        except Exception as error:
            detail = _converter_error(str(error) + "\n" + log.getvalue())
            raise EdgekitError(f"ai-edge-quantizer cannot make the {name} variant: {detail}") from None
    return _inline_buffers(bytes(result.quantized_model)), method


# -- measuring ------------------------------------------------------------------------------------------------


def measure(variant: Variant, source: Source, threads=(1, 2), timed_runs: int = TIMED_RUNS) -> Variant:
    """The variant against the float model on the evaluation inputs, and its host latency per thread count."""
    from edgekit.quantize import compare_outputs, run_tflite

    outputs = run_tflite(variant.tflite_bytes, source.x_eval)
    compared = compare_outputs(source.float_outputs, outputs, source.y_eval)
    float_acc, acc = compared.pop("reference_accuracy", None), compared.pop("candidate_accuracy", None)
    if float_acc is not None and acc is not None:
        metric, value, float_value = "accuracy", acc, float_acc
    else:
        metric, value, float_value = "top-1 agreement", compared["top1_agreement"], 1.0
    extra = variant.metrics.pop("int8_report", None)
    variant.metrics.update(metric=metric, value=value, float_value=float_value,
                           drop_points=round(100 * (float_value - value), 4),
                           top1_agreement=compared["top1_agreement"], cosine=compared["cosine_similarity"],
                           rmse=compared["rmse"], inputs=source.inputs)
    if extra is not None:  # the int8 variant's own quantize report: the same numbers, by construction
        variant.metrics["quantize_report"] = extra
    variant.latency_ms = {n: host_latency_ms(variant.tflite_bytes, n, timed_runs) for n in threads}
    return variant


def host_latency_ms(tflite_bytes: bytes, threads: int, runs: int = TIMED_RUNS) -> float:
    """Median milliseconds of one inference with LiteRT's default CPU path (XNNPACK) on this computer."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.quantize import _native_stderr_captured

    with _native_stderr_captured():
        interpreter = Interpreter(model_content=bytes(tflite_bytes), num_threads=threads)
        interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    for _ in range(WARMUP_RUNS):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - started) * 1e3)
    return round(statistics.median(times), 4)


# -- choosing -------------------------------------------------------------------------------------------------


def board_settings(board) -> dict:
    mobile = board.data.get("mobile") or {}
    return {"accelerator": str(mobile.get("accelerator", "xnnpack")),
            "tolerance_points": float(mobile.get("tolerance_points", DEFAULT_TOLERANCE_POINTS))}


def choose(variants: list[Variant], board, forced: str | None = None) -> tuple[Variant, str]:
    """(the chosen variant, the rule as a sentence)."""
    settings = board_settings(board)
    metric = variants[0].metrics.get("metric", "metric")
    rule = RULE.format(metric=metric, tolerance=settings["tolerance_points"], board=board.name,
                       accelerator=ACCELERATOR_NAMES.get(settings["accelerator"], settings["accelerator"]))
    if forced:
        chosen = next((v for v in variants if v.name == forced), None)
        if chosen is None:
            raise UsageError(f"variant {forced} was not made; made: {', '.join(v.name for v in variants)}")
        return chosen, f"--variant {forced} (else: {rule})"
    within = [v for v in variants if v.metrics["drop_points"] <= settings["tolerance_points"]]
    if not within:  # float itself is always within; without it, the least lossy
        within = [min(variants, key=lambda v: v.metrics["drop_points"])]
    suited = [v for v in within if settings["accelerator"] in v.accelerators] or within
    return min(suited, key=lambda v: (v.bytes, VARIANTS.index(v.name))), rule


def make_all(model, data=None, *, names=VARIANTS, board=None, calibration_samples=None, eval_samples=None,
             quiet: bool = False, timed_runs: int = TIMED_RUNS) -> tuple[list[Variant], Source, list[str]]:
    """Every variant that can be made from this model, measured; and one line for each that could not."""
    from edgekit.console import progress

    source = load_source(model, data, calibration_samples=calibration_samples, eval_samples=eval_samples)
    made, skipped = [], []
    with progress(quiet) as bar:
        task = bar.add_task("variants", total=len(names))
        for name in names:
            bar.update(task, description=f"variant {name}")
            try:
                variant = make_variant(name, source, calibration_samples=calibration_samples,
                                       eval_samples=eval_samples)
            except EdgekitError as error:
                if len(names) == 1:
                    raise
                skipped.append(f"{name}: {error}")
                bar.advance(task)
                continue
            made.append(measure(variant, source, timed_runs=timed_runs))
            bar.advance(task)
    return made, source, skipped
