"""`edgekit profile --validate-layers`: each layer's int8 output on the device, against the references.

For a few inputs, the device runs layers 0..N of one inference and sends layer N's output tensor (`ek-layer-out N`,
docs/protocol.md), for every layer N. Each is compared with:
- the reference: TFLite Micro's host interpreter keeping every tensor (kPreserveAllTensors), the same int8 model on
  the same int8 input: max |diff| in int8 steps, cosine and RMSE of the dequantized values;
- the float model, when the build came from a Keras or float model (the build folder keeps the float .tflite):
  LiteRT with experimental_preserve_all_tensors on the same input dequantized, its tensor of the same name, against
  the device's dequantized values (cosine, RMSE, max |diff| in the float model's units): what int8 cost, layer by
  layer.
The first layer whose output differs from the reference by more than DIVERGE_STEPS int8 steps is named: where a
wrong kernel, a wrong constant or a memory overlap first shows.

The native backend answers ek-layer-out from its memory plan (which knows where every tensor lives). TFLite
Micro's MicroInterpreter can only keep every tensor with preserve_all_tensors, which plans no reuse: the arena then
holds every activation at once (`tflm_preserve_all_arena_bytes` below estimates it); edgekit's TFLite Micro
application does not build that way, so its devices answer ek-layer-out with an error, reported in one line.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError

DIVERGE_STEPS = 1  # int8 steps tolerated against the reference (a rounding difference between kernels)
FLOAT_COSINE = 0.99  # below this, a layer is flagged as far from the float model
DEFAULT_SAMPLES = 3  # inputs whose every layer is fetched (each fetch re-runs the layers before it)
LAYER_SECONDS = 30.0  # an ek-layer-out answer (layers 0..N of one inference, then the hex)


def _dequantize(values: np.ndarray, tensor) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not tensor.is_quantized:
        return values
    scale = tensor.scale.astype(np.float64)
    zero = tensor.zero_point.astype(np.float64)
    if scale.size > 1:  # per-channel activations do not occur in int8 models, but stay correct if they do
        shape = [1] * values.ndim
        shape[tensor.quantized_dimension] = scale.size
        return (values - zero.reshape(shape)) * scale.reshape(shape)
    return (values - zero[0]) * scale[0]


def _figures(a: np.ndarray, b: np.ndarray) -> dict:
    """cos, rmse and max |diff| of two float arrays (a = the device)."""
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cos = float(a @ b / norms) if norms > 0 else (1.0 if np.array_equal(a, b) else 0.0)
    diff = a - b
    return {"cos": cos, "rmse": float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0,
            "max_abs_diff": float(np.abs(diff).max()) if diff.size else 0.0}


def reference_tensors(model_bytes: bytes, inputs: np.ndarray, tensors: list[int]) -> list[dict[int, np.ndarray]]:
    """TFLite Micro's value of each of `tensors` after one inference of each input (kPreserveAllTensors)."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        interpreter = runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=64 * 1024 * 1024,
                                                     intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    except (RuntimeError, ValueError) as error:
        raise EdgekitError(f"TFLite Micro cannot load this model to keep its tensors: {error}") from None
    shape = tuple(int(d) for d in interpreter.get_input_details(0)["shape"])
    values = []
    for sample in inputs:
        interpreter.set_input(sample.reshape(shape), 0)
        interpreter.invoke()
        values.append({t: np.array(interpreter.GetTensor(t, 0)["tensor_data"]).copy() for t in tensors})
    return values


def float_tensors(float_bytes: bytes, inputs: np.ndarray, names: list[str]) -> list[dict[str, np.ndarray]]:
    """The float model's tensors of these names after one inference of each (float) input (LiteRT, every tensor
    kept); a name the float model lacks is left out."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=bytes(float_bytes), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    by_name = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    wanted = {n: by_name[n] for n in names if n in by_name}
    detail = interpreter.get_input_details()[0]
    values = []
    for sample in inputs:
        interpreter.set_tensor(detail["index"], sample.reshape(detail["shape"]).astype(detail["dtype"]))
        interpreter.invoke()
        values.append({n: np.array(interpreter.get_tensor(i)).copy() for n, i in wanted.items()})
    return values


def tflm_preserve_all_arena_bytes(graph) -> int:
    """What TFLite Micro's arena would hold with preserve_all_tensors: every activation tensor at once (no plan),
    16-byte aligned, before its persistent structures."""
    return sum(-(-t.nbytes // 16) * 16 for t in graph.tensors if not t.is_constant)


def validate_layers(build, graph, device, inputs: np.ndarray, float_inputs: np.ndarray | None,
                    samples: int = DEFAULT_SAMPLES, progress=None) -> dict:
    """Fetch every layer's output for the first `samples` inputs and compare them (the --json 'layer_validation')."""
    from edgekit.device import DeviceError
    from edgekit.layer_names import label

    count = device.announced.layers if device.announced else 0
    operators = build.device_operators(count)
    names = build.layer_names()
    used = inputs[:max(1, min(samples, len(inputs)))]
    layers = []
    for position, op_index in enumerate(operators):
        op = graph.operators[op_index]
        layers.append({"index": position, "operator": op_index, "op": op.opcode, "tensor": op.outputs[0],
                       "layer": names[op_index] if op_index < len(names) else None})
    result = {"samples": len(used), "layers": layers, "first_divergent": None, "first_far_from_float": None,
              "diverge_steps": DIVERGE_STEPS, "float_model": None, "tflm_preserve_all_arena_bytes":
              tflm_preserve_all_arena_bytes(graph)}
    task = progress.add_task("validating layers", total=len(used) * len(layers)) if progress else None
    fetched: list[list[np.ndarray]] = []
    for sample in used:
        device.load_input(sample.tobytes())
        row = []
        for entry in layers:
            tensor = graph.tensors[entry["tensor"]]
            try:
                data = device.layer_output(entry["index"], tensor.nbytes, timeout=LAYER_SECONDS)
            except DeviceError as error:
                if "keeps no layer outputs" in str(error):
                    raise EdgekitError(f"the {build.manifest.get('backend')} backend on the device keeps no layer "
                                       "outputs (ek-layer-out); --validate-layers needs the native backend "
                                       "(TFLite Micro would need preserve_all_tensors, an arena of about "
                                       f"{result['tflm_preserve_all_arena_bytes']:,} bytes of activations)") from None
                raise
            row.append(np.frombuffer(data, dtype=tensor.dtype).reshape(tensor.shape))
            if progress:
                progress.advance(task)
        fetched.append(row)

    reference = reference_tensors(graph.model_bytes, used, [e["tensor"] for e in layers])
    floats = None
    if build.float_model_path and build.float_model_path.is_file() and float_inputs is not None:
        floats = float_tensors(build.float_model_path.read_bytes(), float_inputs[:len(used)],
                               [graph.tensors[e["tensor"]].name for e in layers])
        result["float_model"] = build.float_model_path.name
    for k, entry in enumerate(layers):
        tensor = graph.tensors[entry["tensor"]]
        device_values = np.stack([row[k] for row in fetched])
        ref_values = np.stack([reference[s][entry["tensor"]].reshape(tensor.shape) for s in range(len(used))])
        steps = np.abs(device_values.astype(np.int64) - ref_values.astype(np.int64))
        figures = _figures(_dequantize(device_values, tensor), _dequantize(ref_values, tensor))
        figures.update(max_abs_diff=int(steps.max()) if steps.size else 0, mismatched=int((steps > 0).sum()))
        entry["reference"] = figures
        if result["first_divergent"] is None and figures["max_abs_diff"] > DIVERGE_STEPS:
            result["first_divergent"] = {"index": entry["index"], "op": entry["op"], "layer": entry["layer"],
                                         "label": label(entry["index"], entry["op"], entry["layer"]),
                                         "max_abs_diff": figures["max_abs_diff"]}
        if floats is not None and tensor.name in floats[0]:
            float_values = np.stack([floats[s][tensor.name] for s in range(len(used))])
            if float_values.size == device_values.size:
                entry["float"] = _figures(_dequantize(device_values, tensor), float_values.reshape(device_values.shape))
                if result["first_far_from_float"] is None and entry["float"]["cos"] < FLOAT_COSINE:
                    result["first_far_from_float"] = {"index": entry["index"], "op": entry["op"],
                                                      "layer": entry["layer"], "cos": entry["float"]["cos"],
                                                      "label": label(entry["index"], entry["op"], entry["layer"])}
    return result
