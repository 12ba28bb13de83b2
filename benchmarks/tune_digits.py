"""`edgekit tune` on the bundled digits example against a budget the unpruned model misses, on mps2-an386.

Runs the command as a user would (its real output is printed), then checks what the issue asks: the unpruned
model misses both the RAM and the instruction budget, the tune finds within the trials a model that meets both
with at most the allowed accuracy drop, and `edgekit build --recipe DIR/edgekit.toml` rebuilds that very model
(same int8 flatbuffer, same RAM and instructions measured again in QEMU). Prints the figures and the time taken;
exits 1 when a check fails.

    python benchmarks/tune_digits.py [--trials 20] [--max-ram 8192] [--max-instructions 400000] [-o tune-digits]
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"


def edgekit(*args, capture=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], env=env, text=True,
                          capture_output=capture)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-ram", type=int, default=8192)
    parser.add_argument("--max-instructions", type=int, default=400_000)
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0)
    parser.add_argument("-o", "--output", default="tune-digits", help="the tune's folder (replaced)")
    args = parser.parse_args()
    out = Path(args.output)
    shutil.rmtree(out, ignore_errors=True)

    command = ["tune", DIGITS / "digits_cnn.keras", "--data", DIGITS / "digits.npz", "--board", "mps2-an386",
               "--max-ram", args.max_ram, "--max-instructions", args.max_instructions,
               "--max-accuracy-drop", args.max_accuracy_drop, "--trials", args.trials, "-o", out]
    print("$ edgekit " + " ".join(str(Path(a).relative_to(ROOT)) if str(a).startswith(str(ROOT)) else str(a)
                                  for a in command), flush=True)
    started = time.monotonic()
    done = edgekit(*command, capture=False)
    tune_seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"edgekit tune failed (exit {done.returncode})")
    document = json.loads((out / "tune.json").read_text())
    base, best = document["baseline"], document["best"]

    checks = []
    checks.append(("the unpruned model misses the RAM budget",
                   base["ram_bytes"] > args.max_ram, f"{base['ram_bytes']:,} B > {args.max_ram:,} B"))
    checks.append(("the unpruned model misses the instruction budget", base["instructions"] > args.max_instructions,
                   f"{base['instructions']:,} > {args.max_instructions:,}"))
    checks.append(("a trial meets both budgets", best is not None, f"trial {best['number']}" if best else "none"))
    rebuild = None
    if best is not None:
        v = best["values"]
        drop = 100 * (base["accuracy"] - v["accuracy"])
        checks.append((f"within {args.trials} trials", best["number"] < args.trials, f"trial {best['number']}"))
        checks.append((f"at most {args.max_accuracy_drop:g} point lost", drop <= args.max_accuracy_drop,
                       f"{100 * base['accuracy']:.2f}% -> {100 * v['accuracy']:.2f}% ({drop:+.2f} points)"))
        started = time.monotonic()
        built = edgekit("build", "--recipe", out / "edgekit.toml", "-o", out / "rebuild", "--json")
        if built.returncode != 0:
            checks.append(("the recipe rebuilds the model", False, built.stderr.strip()[-300:]))
        else:
            rebuild = json.loads(built.stdout)
            profile = json.loads(edgekit("profile", out / "rebuild", "--runs", 3, "--json").stdout)
            rebuild_seconds = time.monotonic() - started
            same = rebuild["manifest"]["model_sha256"] == hashlib.sha256((out / "best.tflite").read_bytes()).hexdigest()
            ram = rebuild["manifest"]["sizes"]["ram_static_bytes"] + profile["stack_bytes"]
            checks.append(("the recipe rebuilds the same int8 model", same, rebuild["manifest"]["model_sha256"][:16]))
            checks.append(("the rebuilt firmware meets the RAM budget", ram <= args.max_ram,
                           f"{ram:,} B (static {rebuild['manifest']['sizes']['ram_static_bytes']:,} + stack "
                           f"{profile['stack_bytes']:,})"))
            checks.append(("the rebuilt firmware meets the instruction budget",
                           profile["instructions"]["median"] <= args.max_instructions,
                           f"{profile['instructions']['median']:,} instructions in QEMU"))
    print()
    print(f"tune: {document['trials_complete']} trials in {tune_seconds:.0f} s "
          f"({tune_seconds / max(1, document['trials_complete']):.1f} s per trial; "
          f"{document['rejected_before_training']} rejected before training; measurement cache "
          f"{document['cache']['hits']} hits / {document['cache']['misses']} misses, quantization cache "
          f"{document['cache'].get('quantize_hits', 0)} / {document['cache'].get('quantize_misses', 0)})")
    if rebuild is not None:
        print(f"rebuild from the recipe and profile: {rebuild_seconds:.0f} s")
    failed = 0
    for what, ok, detail in checks:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}: {detail}")
        failed += not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
