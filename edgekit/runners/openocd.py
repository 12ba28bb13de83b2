"""The openocd runner: any board OpenOCD knows, with the board file's OpenOCD config."""

from __future__ import annotations

from edgekit.errors import EdgekitError
from edgekit.runners.base import PROBE_IMAGES, Capabilities, ToolRunner


class OpenocdRunner(ToolRunner):
    """Any board OpenOCD knows, with the board file's OpenOCD config."""

    name = program = "openocd"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "apt-get install openocd"
    setting = "openocd_config"
    suffixes = PROBE_IMAGES

    @classmethod
    def create(cls, board, build, args):
        runner = super().create(board, build, args)
        if any(c in str(runner.image) for c in "{}\\"):
            raise EdgekitError(f"firmware path {runner.image} contains braces or backslashes, which OpenOCD's "
                               "Tcl cannot take; move the build folder")
        return runner

    def commands(self):
        address = f" {self.bin_address()}" if self.bin_address() else ""
        program = f"program {{{self.image}}}{address} verify reset exit"
        return [["openocd", "-f", str(self.settings["openocd_config"]), "-c", program]]
