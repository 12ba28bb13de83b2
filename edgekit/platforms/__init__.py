"""Platforms, one module each: where a model runs (see edgekit.platforms.base for the interface).

A board names its platform as data (`project` in boards/*.toml); this registry is the only place that maps
that name to a module. Adding a board family is one module here plus its board files.
"""

from __future__ import annotations

import importlib

from edgekit.errors import EdgekitError
from edgekit.platforms.base import Platform  # noqa: F401

# board.project -> module:class
PLATFORMS = {
    "host": "edgekit.platforms.host:HostPlatform",
    "qemu": "edgekit.platforms.qemu:QemuPlatform",
    "cmake-arm": "edgekit.platforms.cmake_arm:CmakeArmPlatform",
    "esp-idf": "edgekit.platforms.esp_idf:EspIdfPlatform",
    "arduino": "edgekit.platforms.arduino:ArduinoPlatform",
    "pico-sdk": "edgekit.platforms.pico_sdk:PicoSdkPlatform",
    "linux": "edgekit.platforms.linux:LinuxPlatform",
    "android": "edgekit.platforms.android:AndroidPlatform",
}


def get_platform(name: str) -> Platform:
    if name not in PLATFORMS:
        raise EdgekitError(f"no platform '{name}'; expected one of: {', '.join(PLATFORMS)}")
    module, cls = PLATFORMS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def platform_for(board) -> Platform:
    """The platform the board names (its `project` key)."""
    return get_platform(board.project)
