"""Backends, one module each: what computes the model (see edgekit.backends.base for the interface).

A backend never knows the board: it is given a Target by the platform and declares what it needs.
"""

from __future__ import annotations

from edgekit.backends.base import Backend, BackendOutput, BuildNeeds, Library, Target, Verdict  # noqa: F401
from edgekit.errors import UsageError

BACKEND_NAMES = ("tflm", "native")


def get_backend(name: str) -> Backend:
    """The backend called `name`, or a usage error listing them."""
    if name == "native":
        from edgekit.backends.native import NativeBackend

        return NativeBackend()
    if name == "tflm":
        from edgekit.backends.tflm import TflmBackend

        return TflmBackend()
    raise UsageError(f"unknown backend '{name}'; expected one of: {', '.join(BACKEND_NAMES)}")
