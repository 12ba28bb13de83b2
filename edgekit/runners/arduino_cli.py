"""The arduino-cli runner: arduino-cli upload of the compiled binary, with the board's FQBN."""

from __future__ import annotations

from edgekit.runners.base import Capabilities, ToolRunner


class ArduinoCliRunner(ToolRunner):
    """Arduino boards: arduino-cli upload of the compiled binary, with the board's FQBN."""

    name = program = "arduino-cli"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "the installer at https://arduino.github.io/arduino-cli (then arduino-cli core install ...)"
    setting = "fqbn"
    needs_port = True

    def commands(self):
        return [["arduino-cli", "upload", "--port", self.port, "--fqbn", str(self.settings["fqbn"]),
                 "--input-file", str(self.image)]]
