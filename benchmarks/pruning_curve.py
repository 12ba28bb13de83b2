"""Accuracy against MACs for several structured-pruning ratios on the scikit-learn digits CNN.

For each ratio: structured pruning of that fraction of the channels, fine-tuning, int8 quantization; prints
MACs, parameters, int8 flash and activation RAM, float and int8 test accuracy, and draws the curve. Also prints
magnitude pruning at the same sparsities for comparison (same MACs and flash, smaller only after zlib).

    python benchmarks/pruning_curve.py [--epochs 8] [--plot pruning_curve.png]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests/digits.py
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RATIOS = (0.0, 0.25, 0.5, 0.625, 0.75, 0.875)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs after each pruning")
    parser.add_argument("--plot", default="pruning_curve.png", help="PNG of accuracy vs MACs")
    args = parser.parse_args()

    from edgekit.data import Dataset
    from edgekit.optimize import run_recipe
    from tests.digits import train_digits_cnn

    started = time.monotonic()
    model, x_train, y_train, x_test, y_test = train_digits_cnn()
    data = Dataset(x_train, y_train, x_test, y_test, source="sklearn digits")
    print(f"digits CNN trained in {time.monotonic() - started:.1f} s; {len(x_train)} train / {len(x_test)} test")

    rows = []
    for technique, key in (("structured", "ratio"), ("magnitude", "sparsity")):
        for ratio in RATIOS:
            if technique == "magnitude" and ratio == 0:
                continue
            t = time.monotonic()
            steps = [{"technique": technique, key: ratio, "epochs": args.epochs if ratio else 0}]
            _, report = run_recipe(model, data, steps, quiet=True)
            a = report["after"]
            rows.append({"technique": technique, "ratio": ratio, "macs": a["macs"], "params": a["params"],
                         "flash": a["int8"]["flash_bytes"], "zlib": a["int8"]["zlib_bytes"],
                         "ram": a["int8"]["activation_bytes"], "float_acc": a["value"],
                         "int8_acc": a["int8"]["accuracy"], "seconds": time.monotonic() - t})

    header = f"{'technique':<11}{'ratio':>6}{'MACs':>10}{'params':>9}{'flash B':>9}{'zlib B':>9}{'RAM B':>7}" \
             f"{'float %':>9}{'int8 %':>8}{'s':>6}"
    print(header)
    for r in rows:
        print(f"{r['technique']:<11}{r['ratio']:>6.3f}{r['macs']:>10,}{r['params']:>9,}{r['flash']:>9,}"
              f"{r['zlib']:>9,}{r['ram']:>7,}{100 * r['float_acc']:>9.2f}{100 * r['int8_acc']:>8.2f}"
              f"{r['seconds']:>6.1f}")
    _plot(rows, args.plot)
    print(f"wrote {args.plot}")


def _plot(rows, path):
    from edgekit.plots import pyplot, save

    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    structured = [r for r in rows if r["technique"] == "structured"]
    magnitude = [r for r in rows if r["technique"] == "magnitude"]
    for key, style, label in (("int8_acc", "o-", "int8"), ("float_acc", "s--", "float")):
        left.plot([r["macs"] / 1e3 for r in structured], [100 * r[key] for r in structured], style, label=label)
    for r in structured:
        left.annotate(f"{r['ratio']:g}", (r["macs"] / 1e3, 100 * r["int8_acc"]), textcoords="offset points",
                      xytext=(4, -12), fontsize=8)
    left.set_xlabel("MACs per inference (thousands)")
    left.set_ylabel("test accuracy %")
    left.set_title("Structured pruning (labels: ratio of channels removed)")
    left.legend()
    left.grid(alpha=0.3)
    dense = structured[0]
    for subset, name in ((structured, "structured"), (magnitude, "magnitude")):
        series = ([dense] if name == "magnitude" else []) + subset
        right.plot([r["zlib"] / 1024 for r in series], [100 * r["int8_acc"] for r in series], "o-",
                   label=f"{name}: zlib size")
        right.plot([r["flash"] / 1024 for r in series], [100 * r["int8_acc"] for r in series], "x:",
                   label=f"{name}: flash size")
    right.set_xlabel("int8 model size (KiB)")
    right.set_ylabel("int8 test accuracy %")
    right.set_title("Size on the device: flash vs compressed")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    save(figure, path)


if __name__ == "__main__":
    main()
