"""edgekit's int8 against MLPerf Tiny's reference int8, both judged against the float model on the same inputs.

For KWS, VWW, IC and AD, each of the two float models MLPerf Tiny ships (Keras .h5/SavedModel and float .tflite;
they are not always the same weights: KWS's SavedModel and float .tflite agree only at cosine ~0.9) is quantized
by edgekit (TFLite converter for Keras, ai-edge-quantizer for .tflite). The float model, our int8 and the
reference int8 run on the same inputs; we print sizes, operators, and the top-1 agreement and output cosine of
each int8 model against that float model.

The data sets are not shipped, so the inputs are RANDOM: calibration and "uniform" evaluation sets drawn uniformly
over the reference int8 model's input range (separate seeds), and a "gaussian" evaluation set (centre of that
range, sixth of its width as standard deviation) that our calibration did not see. AD also has one real
recording (40 frames): evaluated on it too, calibrated on noisy copies of it plus uniform frames. Random data
favours us: our calibration saw random inputs, the reference's saw real data and clips out-of-distribution
activations. So this shows our quantization is sound on the same inputs, not that it is more accurate on real data.

    python benchmarks/quantize_mlperf.py [--samples N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS", REPO.parent / "shared" / "models")) / "mlperf_tiny"
AD_SAMPLE = "anomaly_detection/sample_input_normal_id_01_00000000_hist_librosa.bin"
MODELS = ["kws", "vww", "ic", "ad"]  # the models that ship both a float model and a reference int8
FLOAT_TFLITE = {
    "kws": "keyword_spotting/kws_ref_model_float32.tflite",
    "vww": "visual_wake_words/vww_96_float.tflite",
    "ic": "image_classification/pretrainedResnet.tflite",
    "ad": "anomaly_detection/ad01_fp32.tflite",
}


def input_range(graph) -> tuple[float, float]:
    """The float interval the int8 input can represent."""
    t = graph.input_tensors()[0]
    scale, zero_point = float(t.scale[0]), int(t.zero_point[0])
    return (-128 - zero_point) * scale, (127 - zero_point) * scale


def evaluation_sets(name: str, shape, reference_graph, samples: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(calibration inputs, {evaluation set name: inputs})."""
    low, high = input_range(reference_graph)
    uniform = lambda seed, n: np.random.default_rng(seed).uniform(low, high, (n, *shape)).astype(np.float32)
    gaussian = np.random.default_rng(3).normal((low + high) / 2, (high - low) / 6, (samples, *shape))
    calibration = uniform(0, samples)
    sets = {"uniform": uniform(1, samples), "gaussian": np.clip(gaussian, low, high).astype(np.float32)}
    if name == "ad":
        frames = np.fromfile(SHARED / AD_SAMPLE, dtype="<f4").reshape(-1, *shape)
        rng = np.random.default_rng(2)
        noisy = [frames + rng.normal(0, 0.5, frames.shape).astype(np.float32) for _ in range(5)]
        calibration = np.concatenate([calibration[: samples // 2], *noisy])
        sets["real recording"] = frames
    return calibration, sets


def agreement(float_out, int8_out, classes: bool) -> dict:
    from edgekit.quantize import compare_outputs

    metrics = compare_outputs(float_out, int8_out)
    return {"top1": metrics["top1_agreement"] if classes else None, "cosine": metrics["cosine_similarity"],
            "rmse": metrics["rmse"]}


def measure(name: str, source: Path, samples: int) -> list[dict]:
    from edgekit.data import from_arrays
    from edgekit.models import load_model
    from edgekit.quantize import quantize, run_tflite
    from edgekit.tflite_model import load_tflite, parse_tflite
    from tests.conftest import INT8_MODELS

    reference_path = SHARED / INT8_MODELS[name]
    reference = load_tflite(reference_path)
    loaded = load_model(source)
    calibration, sets = evaluation_sets(name, loaded.input_shape, reference, samples)
    started = time.monotonic()
    ours = quantize(loaded, from_arrays(calibration, x_test=calibration[:1]), calibration_samples=len(calibration),
                    per_layer=False, quiet=True).tflite_bytes
    seconds = time.monotonic() - started
    graph = parse_tflite(ours)
    classes = int(np.prod(graph.output_tensors()[0].shape)) < 100  # class scores, not AD's reconstruction
    records = []
    for set_name, x in sets.items():
        float_out = loaded.predict(x)
        records.append({
            "model": name, "float": source.name, "inputs": set_name, "samples": len(x),
            # how many classes the float model picks on this set: 1 means top-1 agreement says little
            "float_classes": int(len(np.unique(float_out.argmax(axis=1)))) if classes else None, "calibration_samples": len(calibration),
            "quantize_seconds": round(seconds, 1),
            "ours_bytes": len(ours), "reference_bytes": reference_path.stat().st_size,
            "ours_ops": graph.opcodes, "reference_ops": reference.opcodes,
            "ours": agreement(float_out, run_tflite(ours, x), classes),
            "reference": agreement(float_out, run_tflite(reference.model_bytes, x), classes),
        })
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="calibration and evaluation samples (each)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"MLPerf Tiny models not found at {SHARED}", file=sys.stderr)
        return 1
    from tests.conftest import FLOAT_MODELS

    records = []
    for name in args.models.split(","):
        for source in (FLOAT_MODELS[name.strip()], FLOAT_TFLITE[name.strip()]):
            records += measure(name.strip(), SHARED / source, args.samples)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    from rich.console import Console

    from edgekit.console import table

    percent = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    rows = [[r["model"], r["float"], r["inputs"], r["samples"], r["float_classes"], r["ours_bytes"], r["reference_bytes"],
             percent(r["ours"]["top1"]), percent(r["reference"]["top1"]),
             f"{r['ours']['cosine']:.4f}", f"{r['reference']['cosine']:.4f}", r["quantize_seconds"]]
            for r in records]
    console = Console(width=max(Console().width, 150))
    console.print(table("edgekit int8 vs MLPerf Tiny reference int8, each against the float model "
                        "(RANDOM inputs: no data sets here)",
                        ["model", "float model", "inputs", "n", "float classes", "ours B", "ref B", "top-1 ours", "top-1 ref", "cosine ours",
                         "cosine ref", "quantize s"], rows, right_align_from=3))
    ops = {(r["model"], r["float"]): r for r in records}
    console.print(table("Operators", ["model", "float model", "ours", "reference"],
                        [[*key, " ".join(r["ours_ops"]), " ".join(r["reference_ops"])] for key, r in ops.items()],
                        right_align_from=4))
    console.print("Inputs are random (the data sets are not shipped): our calibration saw the same kind of noise, "
                  "the reference's saw real data, so this checks soundness, not real-data accuracy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
