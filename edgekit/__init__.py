"""edgekit: take a Keras model to a microcontroller and measure, on the device, whether it is fast and small enough.

Stages, one module each: optimize, quantize, analyze, codegen, flash, profile.
Nothing here imports TensorFlow at import time: the CLI must start instantly.
"""

__version__ = "0.1.0"
