"""Linux aarch64 boards: the native program cross-compiled with aarch64-linux-gnu-gcc, run by qemu-aarch64 over
the host board's pipe protocol, is bit-exact against TFLite Micro; the model also comes as a shared library that
exports only its C API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgekit.build import build

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"

pytestmark = pytest.mark.skipif(not (shutil.which("qemu-aarch64") and shutil.which("aarch64-linux-gnu-gcc")),
                                reason="qemu-aarch64 / aarch64-linux-gnu-gcc not installed (scripts/setup.sh)")


@pytest.mark.slow
def test_qemu_aarch64_build_flash_profile_is_bit_exact(tmp_path):
    out = tmp_path / "digits-qemu-aarch64"
    result = build(DIGITS / "digits_cnn.keras", "qemu-aarch64", out, data=DIGITS / "digits.npz", flash=True,
                   profile=True, runs=20, quiet=True)
    manifest = result["manifest"]
    assert manifest["project"] == "linux" and manifest["backend"] == "native" and manifest["runner"] == "qemu-user"
    program = out / manifest["firmware"]
    header = program.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    assert result["flash"]["booted"] and result["flash"]["runner"] == "qemu-user"
    profile = result["profile"]
    assert profile["max_abs_diff"] == 0 and profile["mismatched_values"] == 0 and profile["deterministic"]
    assert profile["accuracy"] == profile["reference_accuracy"] > 0.9  # digits' held-out samples
    assert profile["latency_us"] is None and "no instruction counting" in profile["latency_kind"]

    library = out / "build" / "libedgekit_model.so"
    assert manifest["sizes"]["shared_library_bytes"] == library.stat().st_size > 0
    symbols = subprocess.run(["aarch64-linux-gnu-nm", "-D", "--defined-only", str(library)], capture_output=True,
                             text=True, check=True).stdout.split()
    exported = sorted(s for s in symbols if s.startswith("ek_"))
    assert exported and all(s.startswith("ek_model_") for s in exported) and "ek_model_invoke" in exported
    assert not any(s.startswith("ek_conv") or s.startswith("ek_fc") for s in symbols)
    assert "aarch64-linux-gnu-gcc" in (out / "Makefile").read_text()

    from edgekit.flash import flash_build

    dry = flash_build(out, dry_run=True)
    assert dry["runner"] == "qemu-user" and dry["commands"] == [f"qemu-aarch64 {program}"]
    _shared_library_is_bit_exact(out, manifest)


def _shared_library_is_bit_exact(out: Path, manifest: dict) -> None:
    """A program linked against libedgekit_model.so through edgekit_backend.h alone gives TFLite Micro's output."""
    import numpy as np

    from edgekit.reference import run_reference

    driver = out / "build" / "driver"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-Iapp", str(REPO / "tests" / "shared_library_driver.c"),
                    "-Lbuild", "-ledgekit_model", "-o", str(driver)], cwd=out, check=True, capture_output=True)
    model = (out / manifest["model"]).read_bytes()
    x = np.random.default_rng(3).integers(-128, 128, size=manifest["input"]["shape"], dtype=np.int8)
    ran = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-E", "LD_LIBRARY_PATH=build",
                          str(driver)], cwd=out, input=x.tobytes(), capture_output=True, check=True, timeout=60)
    expected = np.asarray(run_reference(model, x[None])[0], dtype=np.int8)
    assert np.array_equal(np.frombuffer(ran.stdout, dtype=np.int8), expected.reshape(-1))
