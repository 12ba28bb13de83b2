"""Model intake: every float model format users bring, behind one small interface.

Keras 3 reads `.keras` and most `.h5` files; older `.h5` files (configs Keras 3 rejects, such as MLPerf Tiny's
DepthwiseConv2D) and Keras SavedModel folders are read with tf_keras instead, and a SavedModel that is not a Keras
model at all is loaded as a plain TensorFlow SavedModel through its serving signature. Whichever way a model was
read, the rest of edgekit sees the same thing: its input shape, `predict`, and a frozen batch-1 function to convert.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.recurrent import has_fusable_lstm, recurrent_layers_for_conversion

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class LoadedModel:
    """A float model, however it was read.

    framework: "keras3", "tf_keras", "saved_model" (a TF SavedModel that is not a Keras model) or "tflite"
    (then `model` holds the flatbuffer bytes). note: one line for people when something unusual happened.
    """

    model: object
    framework: str
    note: str | None = None
    path: Path | None = None
    name: str = "model"
    _signature_input: str | None = field(default=None, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample (no batch dimension)."""
        if self.framework == "tflite":
            from edgekit.tflite_model import parse_tflite

            return tuple(parse_tflite(self.model, self.name).input_tensors()[0].shape[1:])
        if self.framework == "saved_model":
            return tuple(self._signature_spec().shape[1:])
        return tuple(self.model.inputs[0].shape[1:])

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """One sample's shape per input, in the model's input order."""
        if self.framework in ("keras3", "tf_keras"):
            return [tuple(t.shape[1:]) for t in self.model.inputs]
        if self.framework == "tflite":
            from edgekit.tflite_model import parse_tflite

            return [tuple(t.shape[1:]) for t in parse_tflite(self.model, self.name).input_tensors()]
        return [self.input_shape]

    @property
    def input_names(self) -> list[str]:
        """The inputs' names (Keras Input names), used as .npz keys; "input" for a single-input model."""
        if self.framework in ("keras3", "tf_keras") and len(self.model.inputs) > 1:
            return [_input_name(t, i) for i, t in enumerate(self.model.inputs)]
        if self.framework == "tflite":
            from edgekit.tflite_model import parse_tflite

            tensors = parse_tflite(self.model, self.name).input_tensors()
            if len(tensors) > 1:
                return [t.name or f"x{i}" for i, t in enumerate(tensors)]
        return ["input"]

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """The shape of one sample of the first output (no batch dimension); None when it is not known."""
        if self.framework == "tflite":
            from edgekit.tflite_model import parse_tflite

            return tuple(parse_tflite(self.model, self.name).output_tensors()[0].shape[1:])
        if self.framework == "saved_model":
            try:
                shape = _first_output(self._signature().structured_outputs).shape
                return None if shape.rank is None else tuple(shape[1:])
            except (AttributeError, TypeError, ValueError):
                return None
        outputs = getattr(self.model, "outputs", None)
        return tuple(outputs[0].shape[1:]) if outputs else None

    def _signature(self):
        return self.model.signatures["serving_default"]

    def _signature_spec(self):
        return self._signature().structured_input_signature[1][self._signature_input]

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Float outputs of the first model output, as a numpy array with the batch dimension first."""
        if isinstance(x, (list, tuple)):  # a multi-input Keras model: one array per input
            x = [np.asarray(a, dtype=np.float32) for a in x]
            return np.asarray(_first_output(self.model.predict(x, batch_size=batch_size, verbose=0)))
        x = np.asarray(x, dtype=np.float32)
        if self.framework == "tflite":
            from edgekit.quantize import run_tflite

            return run_tflite(self.model, x)
        if self.framework == "saved_model":
            tf = _tf()
            signature = self._signature()
            parts = []
            for start in range(0, len(x), batch_size):
                outputs = signature(**{self._signature_input: tf.constant(x[start:start + batch_size])})
                parts.append(_first_output(outputs).numpy())
            return np.concatenate(parts) if parts else np.zeros((0,), np.float32)
        return np.asarray(_first_output(self.model.predict(x, batch_size=batch_size, verbose=0)))

    def frozen_function(self, batch: int = 1):
        """A concrete TF function with a fixed batch dimension and its variables folded into constants.

        Fixing the batch to 1 is what makes a Flatten convert to a single RESHAPE instead of the
        SHAPE/STRIDED_SLICE/PACK chain a dynamic batch needs, which microcontroller runtimes do not want.
        """
        if self.framework == "tflite":
            raise EdgekitError(f"{self.name} is already a .tflite file; expected a Keras model or SavedModel")
        tf = _tf()
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        specs = [tf.TensorSpec((batch, *shape), tf.float32, name=name)
                 for shape, name in zip(self.input_shapes, self.input_names)]
        if self.framework == "saved_model":
            signature, name = self._signature(), self._signature_input
            function = tf.function(lambda x: signature(**{name: x}))
        elif len(specs) == 1:
            model = self.model
            function = tf.function(lambda x: model(x, training=False))
        else:
            model = self.model
            function = tf.function(lambda *xs: model(list(xs), training=False))
        try:
            if self.framework == "keras3" and has_fusable_lstm(self.model):
                return _fused_lstm_function(self.model, specs)
            with recurrent_layers_for_conversion(self.model if self.framework in ("keras3", "tf_keras") else None):
                return convert_variables_to_constants_v2(function.get_concrete_function(*specs))
        except EdgekitError:
            raise
        except Exception as error:  # TensorFlow raises many types while tracing a user model
            raise EdgekitError(f"cannot trace {self.name} with a batch of {batch}: {_first_line(error)}") from None

    def count_params(self) -> int | None:
        if self.framework in ("keras3", "tf_keras"):
            return int(self.model.count_params())
        return None


def _fused_lstm_function(model, specs):
    """A concrete function whose LSTMs the converter fuses (see edgekit.recurrent).

    Freezing variables inlines the marked LSTM function, so the weights go in as constants instead (Keras 3's
    stateless_call), and the converter is handed a trackable object: its SavedModel route keeps the marker.
    """
    tf = _tf()
    trainable = [tf.constant(v.numpy()) for v in model.trainable_variables]
    others = [tf.constant(v.numpy()) for v in model.non_trainable_variables]

    def call(*xs):
        return model.stateless_call(trainable, others, xs[0] if len(xs) == 1 else list(xs), training=False)[0]

    with recurrent_layers_for_conversion(model):
        function = tf.function(call).get_concrete_function(*specs)
    function._edgekit_trackable = tf.Module()  # read by quantize._converter
    return function


def _input_name(tensor, index: int) -> str:
    name = getattr(tensor, "name", None) or f"x{index}"
    return name.split(":")[0]


def _tf():
    from edgekit._tf import tensorflow

    return tensorflow()


def _first_output(outputs):
    if isinstance(outputs, dict):
        return outputs[sorted(outputs)[0]]
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:240]


def wrap_keras_model(model, name: str | None = None) -> LoadedModel:
    """A Keras model already in memory (Keras 3 or tf_keras), as a LoadedModel."""
    framework = "tf_keras" if type(model).__module__.startswith("tf_keras") else "keras3"
    loaded = LoadedModel(model=model, framework=framework, name=name or getattr(model, "name", "model"))
    _check_single_input(loaded)
    return loaded


def model_kind(path) -> str:
    """"tflite", "keras" or "saved_model", from the file's first bytes (nothing is loaded); one-line EdgekitError
    for a path that is not a model."""
    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"model file not found: {path}")
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "saved_model"
        raise EdgekitError(f"{path} is a folder but not a SavedModel (no saved_model.pb); expected a .keras or "
                           ".h5 file, a SavedModel folder or a .tflite file")
    if not path.is_file():
        raise EdgekitError(f"{path} is not a regular file; expected a .keras or .h5 file, a SavedModel folder or "
                           "a .tflite file")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix.lower() == ".tflite" or head[4:8] == b"TFL3":
        return "tflite"
    if (head.startswith(b"PK") and zipfile.is_zipfile(path)) or head == _HDF5_MAGIC:
        return "keras"
    if path.suffix.lower() in _KERAS_SUFFIXES:
        raise EdgekitError(f"{path} is not a valid {path.suffix} file (neither a Keras zip archive nor HDF5); "
                           "expected a model saved with model.save()")
    raise EdgekitError(f"{path} is not a model file; expected a .keras or .h5 file, a SavedModel folder or a "
                       ".tflite file")


def load_model(path) -> LoadedModel:
    """Read a `.keras`, `.h5`, SavedModel folder or `.tflite` file; one-line EdgekitError for anything else."""
    from edgekit.fileio import MAX_MODEL_BYTES, check_input_file, read_input_file

    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"model file not found: {path}")
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        loaded = _load_saved_model(path, name)
    else:
        check_input_file(path, "model file", MAX_MODEL_BYTES)  # regular, within the cap: before Keras opens it
        with open(path, "rb") as f:
            head = f.read(8)
        if path.suffix.lower() == ".tflite" or head[4:8] == b"TFL3":
            from edgekit.tflite_model import parse_tflite

            data = read_input_file(path, "model file", MAX_MODEL_BYTES)
            parse_tflite(data, path.name)  # raises the one-line "truncated or corrupted" error
            return LoadedModel(model=data, framework="tflite", path=path, name=name)
        if head.startswith(b"PK") and zipfile.is_zipfile(path):
            loaded = _load_keras3(path, name)
        elif head == _HDF5_MAGIC:
            loaded = _load_h5(path, name)
        elif path.suffix.lower() in _KERAS_SUFFIXES:
            raise EdgekitError(f"{path} is not a valid {path.suffix} file (neither a Keras zip archive nor HDF5); "
                               "expected a model saved with model.save()")
        else:
            raise EdgekitError(f"{path} is not a model; expected a .keras or .h5 file, a SavedModel folder "
                               "or a .tflite file")
    loaded.path = path
    _check_single_input(loaded)
    return loaded


def _load_keras3(path: Path, name: str) -> LoadedModel:
    from edgekit._tf import keras

    try:
        model = keras().models.load_model(path, compile=False)
    except Exception as error:
        raise EdgekitError(f"cannot read {path} as a Keras model: {_first_line(error)}") from None
    return LoadedModel(model=model, framework="keras3", name=name)


def _load_h5(path: Path, name: str) -> LoadedModel:
    from edgekit._tf import keras

    try:
        model = keras().models.load_model(path, compile=False)
        return LoadedModel(model=model, framework="keras3", name=name)
    except Exception as error:
        keras3_error = error
    try:
        tf_keras = _tf_keras()
        model = tf_keras.models.load_model(path, compile=False)
    except Exception as error:
        raise EdgekitError(f"cannot read {path} as a Keras model (Keras 3: {_first_line(keras3_error)}; "
                           f"tf_keras: {_first_line(error)})") from None
    reason = _first_line(keras3_error).split(" using config=")[0]
    return LoadedModel(model=model, framework="tf_keras", name=name,
                       note=f"Keras 3 cannot read {path.name} ({reason}); loaded it with tf_keras instead")


def _load_saved_model(path: Path, name: str) -> LoadedModel:
    if not ((path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()):
        raise EdgekitError(f"{path} is a folder without saved_model.pb; expected a TensorFlow SavedModel folder "
                           "(or a .keras, .h5 or .tflite file)")
    try:
        model = _tf_keras().models.load_model(path, compile=False)
        if not getattr(model, "inputs", None):  # tf_keras hands back a bare object for non-Keras SavedModels
            raise TypeError("not a Keras model")
        return LoadedModel(model=model, framework="tf_keras", name=name,
                           note=f"{path.name} is a Keras SavedModel, which Keras 3 cannot read; loaded it with tf_keras")
    except Exception:
        pass  # not a Keras SavedModel: read it as plain TensorFlow below
    tf = _tf()
    try:
        obj = tf.saved_model.load(str(path))
    except Exception as error:
        raise EdgekitError(f"cannot read the SavedModel {path}: {_first_line(error)}") from None
    signatures = getattr(obj, "signatures", {})
    if "serving_default" not in signatures:
        raise EdgekitError(f"the SavedModel {path} has no 'serving_default' signature; expected a model exported "
                           "with a serving signature")
    inputs = signatures["serving_default"].structured_input_signature[1]
    if len(inputs) != 1:
        raise EdgekitError(f"the SavedModel {path} takes {len(inputs)} inputs; edgekit handles single-input models")
    return LoadedModel(model=obj, framework="saved_model", name=name, _signature_input=next(iter(inputs)),
                       note=f"{path.name} is not a Keras model; using its TensorFlow serving signature")


def _tf_keras():
    _tf()
    import tf_keras

    return tf_keras


def _check_single_input(loaded: LoadedModel) -> None:
    """Every input of a fixed shape (a Keras model may have several; a SavedModel signature one)."""
    if loaded.framework == "tflite":
        return
    for shape in loaded.input_shapes:
        if any(d is None for d in shape):
            raise EdgekitError(f"{loaded.name} has an input of shape {_shape_text(shape)} with an unknown "
                               "dimension; expected a fixed input shape (set it in keras.Input(shape=...))")


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
