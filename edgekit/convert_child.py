"""The TFLite converter, run in a child process so that a crash in its C++ code is one line, not exit 139.

TensorFlow's calibrator and quantizer are native code: a segfault there (tensorflow/tensorflow#75140, a WHILE
loop's freed pass-through output) would kill edgekit with no message and, after `optimize`, lose the user's work.
The parent (`convert_keras`) writes the model and the samples to a private folder, runs
`python -m edgekit.convert_child FOLDER` tied to its own life (edgekit.processes), and reads back the float and
int8 flatbuffers and the per-layer errors. The child runs with address-space randomization off and a fixed hash
seed: the quantizer walks hash maps keyed by pointers, so the same model gives the same bytes on every run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

CHILD_TIMEOUT_S = 3600.0
# The child imports this very edgekit package (by its folder), not whichever one an editable install or the
# child's working folder would find first.
_CHILD_CODE = (
    "import importlib.util, sys\n"
    "package = sys.argv[1]\n"
    "spec = importlib.util.spec_from_file_location('edgekit', package + '/__init__.py',"
    " submodule_search_locations=[package])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules['edgekit'] = module\n"
    "spec.loader.exec_module(module)\n"
    "from edgekit.convert_child import main\n"
    "sys.exit(main(sys.argv[2]))\n")
_ADDR_NO_RANDOMIZE = 0x0040000


def _save_samples(path: Path, x) -> None:
    arrays = x if isinstance(x, (list, tuple)) else [x]
    np.savez(path, **{f"x{i}": np.asarray(a, np.float32) for i, a in enumerate(arrays)})


def _load_samples(path: Path):
    with np.load(path) as archive:
        arrays = [archive[f"x{i}"] for i in range(len(archive.files))]
    return arrays[0] if len(arrays) == 1 else arrays


def _model_file(loaded, folder: Path) -> Path | None:
    """A file the child can load the same model from: the user's, or the in-memory model saved into `folder`."""
    if loaded.path is not None and loaded.framework in ("keras3", "tf_keras", "saved_model"):
        return Path(loaded.path).resolve()
    if loaded.framework not in ("keras3", "tf_keras"):
        return None
    target = folder / ("model.keras" if loaded.framework == "keras3" else "model.h5")
    try:
        loaded.model.save(target)
    except Exception:
        return None  # not serializable (a custom layer without get_config): converted in this process instead
    return target


def _no_aslr():
    """Context: children started inside it run with address-space randomization off (Linux personality)."""
    from contextlib import contextmanager

    @contextmanager
    def block():
        if not sys.platform.startswith("linux"):
            yield
            return
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        old = libc.personality(0xFFFFFFFF)
        if old < 0:
            yield
            return
        libc.personality(old | _ADDR_NO_RANDOMIZE)
        try:
            yield
        finally:
            libc.personality(old)

    return block()


def convert_keras(loaded, calibration, x_debug=None, per_channel: bool = True) -> tuple[bytes, bytes, list | None]:
    """(float .tflite, int8 .tflite, per-layer errors or None) for a Keras model or SavedModel, from a child."""
    from edgekit.processes import run_tied

    with tempfile.TemporaryDirectory(prefix="edgekit-convert-") as tmp:
        folder = Path(tmp)
        model_file = _model_file(loaded, folder)
        if model_file is None:
            return convert_here(loaded, calibration, x_debug, per_channel)
        _save_samples(folder / "calibration.npz", calibration)
        if x_debug is not None:
            _save_samples(folder / "debug.npz", x_debug)
        (folder / "request.json").write_text(json.dumps({
            "model": str(model_file), "name": loaded.name, "per_channel": per_channel,
            "modules": _custom_modules(loaded), "sys_path": [p for p in sys.path if p]}))
        env = dict(os.environ, PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2")
        with _no_aslr():
            try:
                done = run_tied([sys.executable, "-c", _CHILD_CODE, str(Path(__file__).resolve().parent),
                                 str(folder)], capture_output=True, timeout=CHILD_TIMEOUT_S, env=env)
            except Exception as error:  # subprocess.TimeoutExpired, OSError
                raise EdgekitError(f"the TFLite converter did not finish converting {loaded.name}: "
                                   f"{type(error).__name__}: {error}") from None
        error_file = folder / "error.json"
        if error_file.is_file():
            raise EdgekitError(json.loads(error_file.read_text())["error"])
        if done.returncode != 0:
            raise EdgekitError(_crash_line(loaded.name, done.returncode, done.stderr or b""))
        layers_file = folder / "layers.json"
        layers = json.loads(layers_file.read_text()) if layers_file.is_file() else None
        return (folder / "float.tflite").read_bytes(), (folder / "int8.tflite").read_bytes(), layers


def _custom_modules(loaded) -> list[str]:
    """Modules defining the model's non-Keras layers: the child imports them so that its Keras can rebuild them."""
    if loaded.framework not in ("keras3", "tf_keras"):
        return []
    from edgekit.recurrent import _layers

    modules = {type(layer).__module__ for layer in _layers(loaded.model)}
    return sorted(m for m in modules if m.split(".")[0] not in ("keras", "tf_keras", "tensorflow", "builtins"))


def _crash_line(name: str, returncode: int, stderr: bytes) -> str:
    if returncode < 0:
        try:
            what = signal.Signals(-returncode).name
        except ValueError:
            what = f"signal {-returncode}"
        how = f"crashed ({what})"
    else:
        how = f"failed (exit status {returncode})"
    lines = [l.strip() for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    telling = ("Fatal Python error", "Check failed", "Error:", "error:")  # not TensorFlow's CUDA/oneDNN chatter
    last = next((l for l in reversed(lines) if any(k in l for k in telling) and "cuda" not in l.lower()), "")
    detail = f": {last[:200]}" if last else ""
    return (f"the TFLite converter {how} while quantizing {name}{detail}; expected a model whose layers the "
            "converter supports (nothing was written)")


def convert_here(loaded, calibration, x_debug=None, per_channel: bool = True):
    """The conversion itself (the child's work; also the fallback for a model that cannot be saved)."""
    from edgekit.quantize import _convert, _layer_errors_debugger

    frozen = loaded.frozen_function(batch=1)
    float_bytes = _convert(frozen)
    int8_bytes = _convert(frozen, calibration, per_channel)
    layers = None if x_debug is None else _layer_errors_debugger(frozen, calibration, x_debug)
    return float_bytes, int8_bytes, layers


def main(folder: str) -> int:
    folder = Path(folder)
    try:
        from edgekit.models import load_model

        request = json.loads((folder / "request.json").read_text())
        sys.path[:0] = [p for p in request.get("sys_path", []) if p not in sys.path]  # the parent's, first
        for module in request.get("modules", []):
            try:
                __import__(module)
            except Exception:
                pass  # Keras names the layer it cannot rebuild
        loaded = load_model(request["model"])
        loaded.name = request["name"]
        calibration = _load_samples(folder / "calibration.npz")
        debug = folder / "debug.npz"
        x_debug = _load_samples(debug) if debug.is_file() else None
        float_bytes, int8_bytes, layers = convert_here(loaded, calibration, x_debug,
                                                       bool(request.get("per_channel", True)))
    except EdgekitError as error:
        (folder / "error.json").write_text(json.dumps({"error": str(error)}))
        return 3
    (folder / "float.tflite").write_bytes(float_bytes)
    (folder / "int8.tflite").write_bytes(int8_bytes)
    if layers is not None:
        (folder / "layers.json").write_text(json.dumps(layers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
