"""Train the bundled digits example: a small CNN on scikit-learn's digits (8x8 grey images, 10 classes).

Writes digits_cnn.keras and digits.npz (x_train/y_train/x_test/y_test, x as float32 in [0, 1] with shape
(N, 8, 8, 1), exactly what the model takes) next to this script, then digits_int8.tflite: that model quantized by
edgekit itself (the README's analyze and build examples use it). Seeded: rerunning gives the same model.

    python examples/digits/make_example.py                  # train, save, quantize
    python examples/digits/make_example.py --quantize-only  # only digits_int8.tflite, from the saved model
"""

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # for tests/digits.py, the one recipe shared with the test suite
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quantize_example():
    """digits_int8.tflite: the saved model quantized the way `edgekit quantize` does it."""
    from edgekit.quantize import quantize

    result = quantize(HERE / "digits_cnn.keras", HERE / "digits.npz", quiet=True)
    (HERE / "digits_int8.tflite").write_bytes(result.tflite_bytes)
    report = result.report
    print(f"wrote {HERE / 'digits_int8.tflite'} ({len(result.tflite_bytes):,} bytes; int8 accuracy "
          f"{report['int8_accuracy']:.4f}, float {report['float_accuracy']:.4f})")


def main():
    if "--quantize-only" in sys.argv[1:]:
        quantize_example()
        return
    from tests.digits import build_digits_cnn, train_digits_cnn

    model, x_train, y_train, x_test, y_test = train_digits_cnn(epochs=15, seed=0)
    _, float_accuracy = model.evaluate(x_test, y_test, verbose=0)
    bare = build_digits_cnn()  # uncompiled: no optimizer state in the file (two thirds of its size)
    bare.set_weights(model.get_weights())
    bare.save(HERE / "digits_cnn.keras")
    np.savez_compressed(HERE / "digits.npz", x_train=x_train.astype(np.float32), y_train=y_train.astype(np.uint8),
                        x_test=x_test.astype(np.float32), y_test=y_test.astype(np.uint8))
    for name in ("digits_cnn.keras", "digits.npz"):
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size:,} bytes)")
    print(f"float test accuracy: {float_accuracy:.4f}")
    quantize_example()


if __name__ == "__main__":
    main()
