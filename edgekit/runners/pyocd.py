"""The pyocd runner: STM32 and nRF boards through a CMSIS-DAP/ST-Link probe."""

from __future__ import annotations

from edgekit.runners.base import PROBE_IMAGES, Capabilities, ToolRunner


class PyocdRunner(ToolRunner):
    """STM32 and nRF boards through a CMSIS-DAP/ST-Link probe."""

    name = program = "pyocd"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "pip install pyocd"
    setting = "pyocd_target"
    suffixes = PROBE_IMAGES

    def commands(self):
        command = ["pyocd", "flash", "--target", str(self.settings["pyocd_target"])]
        if self.bin_address():
            command += ["--base-address", self.bin_address()]
        return [command + [str(self.image)]]
