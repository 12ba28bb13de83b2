"""The native backend's SIMD kernels on a DSP core: MLPerf Tiny models built for mps2-an386 (Cortex-M4F), run in
QEMU, give exactly TFLite Micro's outputs.

The host tests compile the portable kernels (and the SIMD kernels through portable instruction equivalents);
only here do the real SMLAD/SMLABB/SXTB16 instructions run. KWS (depthwise + pointwise) is also covered end to
end by tests/test_profile.py; IC (3x3 convolutions, residual adds) and VWW (depthwise with 8 to 256 channels,
strided and padded) complete the picture.
"""

from __future__ import annotations

import shutil

import pytest

from edgekit.build import build
from edgekit.profile import profile_build

pytestmark = pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                                reason="qemu-system-arm / arm-none-eabi-gcc not installed")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ic", "vww"])
def test_dsp_kernels_in_qemu_are_bit_exact(int8_model_path, tmp_path, name):
    out = tmp_path / name
    build(int8_model_path(name), "mps2-an386", out, backend="native", quiet=True)
    profile = profile_build(out, runs=3, seed=5)
    assert profile["max_abs_diff"] == 0 and profile["top1_agreement"] == 1.0
    ins = profile["instructions"]
    assert 0 < ins["min"] <= ins["max"] < 1.01 * ins["min"]
