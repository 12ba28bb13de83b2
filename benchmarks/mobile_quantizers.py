"""Which tool makes each LiteRT variant: the TFLite converter (post-training quantization on the Keras model) or
ai-edge-quantizer (on the float .tflite), measured on the same inputs in one run.

    PYTHONPATH=. python3 benchmarks/mobile_quantizers.py [--mlperf /work/shared/models/mlperf_tiny]

For each model and variant: bytes, the task's metric (accuracy with labels, else top-1 agreement with float),
cosine and RMSE against the float model, and LiteRT/XNNPACK host latency at 1 thread. edgekit.variants uses the
converter where a Keras model exists (every variant), ai-edge-quantizer for a float .tflite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlperf", type=Path, default=Path("/work/shared/models/mlperf_tiny"))
    parser.add_argument("--eval-samples", type=int, default=200)
    args = parser.parse_args()
    models = [("digits", REPO / "examples/digits/digits_cnn.keras", REPO / "examples/digits/digits.npz")]
    if (args.mlperf / "keyword_spotting/kws_ref_model").is_dir():
        models.append(("kws (generated inputs)", args.mlperf / "keyword_spotting/kws_ref_model", None))
        models.append(("ad (generated inputs)", args.mlperf / "anomaly_detection/ad01.h5", None))
    print("| model | variant | tool | bytes | metric | value | cosine | RMSE | host ms (1 thread) |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|")
    for label, path, data in models:
        for row in compare(path, data, args.eval_samples):
            print(f"| {label} | " + " | ".join(str(x) for x in row) + " |", flush=True)


def compare(path, data, eval_samples):
    from edgekit import variants as V
    from edgekit.quantize import _quantize_tflite

    source = V.load_source(path, data, eval_samples=eval_samples)
    fp32, _ = V._converter_variant("fp32", source.loaded, source.calibration)
    candidates = []
    for name in ("fp16", "dynamic", "int8-float-io"):
        candidates.append((name, "TFLite converter", V._converter_variant(name, source.loaded, source.calibration)[0]))
    candidates.append(("int8", "TFLite converter", V.make_variant("int8", source, eval_samples=eval_samples)
                       .tflite_bytes))
    for name in ("fp16", "dynamic"):
        candidates.append((name, "ai-edge-quantizer", V._aeq_variant(name, fp32, source.calibration, "m")[0]))
    candidates.append(("int8", "ai-edge-quantizer", _quantize_tflite(fp32, source.calibration)))
    rows = []
    for name, tool, data_bytes in sorted(candidates, key=lambda c: (V.VARIANTS.index(c[0]), c[1])):
        variant = V.measure(V.Variant(name, data_bytes, tool, V.ACCELERATORS[name]), source, threads=(1,))
        m = variant.metrics
        rows.append([name, tool, variant.bytes, m["metric"], f"{100 * m['value']:.2f}%", f"{m['cosine']:.6f}",
                     f"{m['rmse']:.3g}", variant.latency_ms[1]])
    return rows


if __name__ == "__main__":
    main()
