"""The one place that imports TensorFlow and Keras, quietly and only when a stage needs them.

TensorFlow's C++ side prints start-up chatter (CUDA probing, CPU feature notes) on file descriptor 2 before any
Python logging setting applies; we hold fd 2 during the import and pass on only lines that are not that chatter.
"""

import os
import re
import sys
import tempfile

_CHATTER = re.compile(
    r"cudart_stub|cuda_(dnn|fft|blas)|Unable to register cu|All log messages before absl::InitializeLog|oneDNN custom "
    r"operations|cpu_feature_guard|This TensorFlow binary is optimized|To enable the following instructions|"
    r"rebuild TensorFlow with the appropriate compiler flags|computation_placer|TF-TRT Warning|"
    r"Could not find cuda drivers|failed call to cuInit"
)


def _quiet_import(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            module = __import__(name)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not _CHATTER.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
    return module


def tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only: no driver probing noise
    tf = _quiet_import("tensorflow")
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return tf


def keras():
    tensorflow()
    return _quiet_import("keras")
