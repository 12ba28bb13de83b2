"""The TFLite Micro library as builds see it: what its optimized kernels ask of the arena, its TARGET_ARCH
spelling per core, the commit a project may fetch. Below analyze, the tflm backend and the platforms, which all
use it (so none imports another for it).

`kernels` is what a platform declares its chip runs: "reference" (TFLite Micro's portable kernels, no scratch),
"cmsis-nn" (Arm Cortex-M) or "esp-nn" (Espressif).
"""

from __future__ import annotations

KERNELS = ("reference", "cmsis-nn", "esp-nn")

# A TFLite Micro commit fetched by -DEDGEKIT_FETCH_TFLM=ON (overridable with -DTFLM_GIT_TAG).
TFLM_GIT_TAG = "90b983c2b3f1480642e040bbd2ddb37b998f3424"  # upstream main, 2026-08-20

# edgekit core name -> TFLite Micro's TARGET_ARCH for cortex_m_generic
_TFLM_TARGET_ARCH = {"cortex-m0plus": "cortex-m0plus", "cortex-m3": "cortex-m3", "cortex-m4": "cortex-m4",
                     "cortex-m4f": "cortex-m4+fp", "cortex-m7": "cortex-m7+fp", "cortex-m33": "cortex-m33",
                     "cortex-m55": "cortex-m55"}


def tflm_target_arch(board) -> str:
    """TFLite Micro's TARGET_ARCH (its Makefile's spelling, e.g. cortex-m4+fp) for the board's core."""
    return _TFLM_TARGET_ARCH.get(board.core, board.core)


def kernel_scratch_bytes(graph, kernels: str) -> int:
    """Largest scratch buffer an optimized kernel asks for, an upper bound from the layer shapes.

    The host interpreter runs TFLite Micro's reference kernels, which request none. CMSIS-NN's s8 convolutions
    and depthwise convolutions need an int16 im2col buffer of at most 2 x kernel_h x kernel_w x in_channels
    elements, its average pool in_channels int32 sums; ESP-NN (ESP32 family) additionally copies a padded input
    for convolutions with SAME padding. Scratch buffers live only during their layer, so the largest one counts.
    """
    if kernels == "reference":
        return 0
    largest = 0
    for op in graph.operators:
        if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
            continue
        x = graph.tensors[op.inputs[0]]
        if len(x.shape) != 4:
            continue
        _, h, w, c = x.shape
        if op.opcode == "AVERAGE_POOL_2D":
            need = 4 * c
        else:
            weights = graph.tensors[op.inputs[1]]
            kh, kw = weights.shape[1], weights.shape[2]
            need = 2 * 2 * kh * kw * c
            if kernels == "esp-nn" and op.options.get("padding") == "SAME":
                need += (h + kh - 1) * (w + kw - 1) * c
        largest = max(largest, need)
    return largest
