"""The adb runner (Android phones): push the chosen variant and LiteRT's benchmark_model, run it with the variant's
accelerator flags, read its timings and memory (edgekit.runners.benchmark_model).

benchmark_model is the user's: a local binary given with --benchmark-model (pushed), or one already on the phone
(--benchmark-model /data/local/tmp/benchmark_model, or the board's `[mobile] remote_dir`/benchmark_model). --port
is the phone's adb serial when several are connected.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.processes import run_tied
from edgekit.runners.base import Capabilities, Runner, require, run_tool
from edgekit.runners.benchmark_model import benchmark_arguments, parse_benchmark_output, profile_report

BENCHMARK_TIMEOUT = 600


def shipped_model(build) -> Path:
    """The .tflite a phone or Linux board runs: the chosen LiteRT variant, else the build's int8 model."""
    chosen = (build.manifest.get("mobile") or {}).get("chosen_file")
    path = build.dir / chosen if chosen else build.model_path
    if path is None or not path.is_file():
        raise EdgekitError(f"build folder {build.dir} has no model file ({chosen or 'manifest model'}); rebuild "
                           "with edgekit build")
    return path


def benchmark_binary(args) -> tuple[str | None, str | None]:
    """(local binary to copy, path on the device): from --benchmark-model or $EDGEKIT_BENCHMARK_MODEL."""
    given = args.extra.get("benchmark_model") or os.environ.get("EDGEKIT_BENCHMARK_MODEL")
    if not given:
        return None, None
    if Path(given).is_file():
        return str(Path(given).resolve()), None
    if given.startswith("/"):
        return None, given  # already on the device
    raise EdgekitError(f"--benchmark-model {given}: no such file here; expected LiteRT's benchmark_model binary "
                       "(a local file to copy, or an absolute path on the device)")


class AdbRunner(Runner):
    name = "adb"
    capabilities = Capabilities(flash=True, address=True, benchmark=True)
    install_hint = "apt-get install adb"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        runner.model = runner.image_file = shipped_model(build)
        runner.remote_dir = str((board.data.get("mobile") or {}).get("remote_dir", "/data/local/tmp/edgekit"))
        runner.local_binary, on_device = benchmark_binary(args)
        runner.binary = on_device or f"{runner.remote_dir}/benchmark_model"
        runner.adb = "adb"
        if not args.dry_run:
            runner.adb = require("adb", cls.install_hint)
            runner._check_device()
        return runner

    def _adb(self) -> list[str]:
        return [self.adb, *(["-s", self.args.port] if self.args.port else [])]

    def _check_device(self) -> None:
        state = run_tied([*self._adb(), "get-state"], capture_output=True, text=True, timeout=30)
        if state.returncode != 0 or state.stdout.strip() != "device":
            said = " ".join((state.stderr or state.stdout).split())[:160] or "no device"
            raise EdgekitError(f"no Android device for adb ({said}); connect a phone with USB debugging on"
                               + ("" if self.args.port else ", or pass --port SERIAL (adb devices)"))

    def remote_model(self) -> str:
        return f"{self.remote_dir}/{self.model.name}"

    def run_command(self, threads: int = 1, runs: int | None = None) -> tuple[list[str], str]:
        variant = (self.build.manifest.get("mobile") or {}).get("chosen")
        arguments, accelerator = benchmark_arguments(self.board, self.remote_model(), variant, threads,
                                                     *([runs] if runs else []))
        return [*self._adb(), "shell", self.binary, *arguments], accelerator

    def setup_commands(self) -> list[list[str]]:
        commands = [[*self._adb(), "shell", "mkdir", "-p", self.remote_dir],
                    [*self._adb(), "push", str(self.model), self.remote_model()]]
        if self.local_binary:
            commands += [[*self._adb(), "push", self.local_binary, self.binary],
                         [*self._adb(), "shell", "chmod", "755", self.binary]]
        return commands

    def commands(self):
        return [*self.setup_commands(), self.run_command(int(self.args.extra.get("threads") or 1))[0]]

    def flash(self, log=None) -> dict:
        for command in self.setup_commands():
            run_tool(command, log)
        return {"pushed": self.remote_model(), "benchmark": self.benchmark(log=log)}

    def benchmark(self, runs: int | None = None, log=None) -> dict:
        if not self.local_binary:
            present = run_tied([*self._adb(), "shell", "test", "-x", self.binary, "&&", "echo", "ok"],
                               capture_output=True, text=True, timeout=30)
            if "ok" not in present.stdout:
                raise EdgekitError(f"LiteRT's benchmark_model is not on the device at {self.binary}; pass "
                                   "--benchmark-model PATH (its android_aarch64 build) to push it")
        command, accelerator = self.run_command(int(self.args.extra.get("threads") or 1), runs)
        return profile_report(self.build, self.name, run_benchmark(command, log), accelerator, command)


def run_benchmark(command: list[str], log=None) -> dict:
    """Run benchmark_model (through adb or ssh) and parse what it printed."""
    import shlex

    if log:
        log("$ " + shlex.join(command))
    try:
        result = run_tied(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=BENCHMARK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise EdgekitError(f"benchmark_model did not finish within {BENCHMARK_TIMEOUT} s") from None
    output = result.stdout + result.stderr
    if result.returncode != 0 and "Inference timings" not in output:
        last = next((l for l in reversed(output.splitlines()) if l.strip()), "no output")
        raise EdgekitError(f"benchmark_model failed with exit status {result.returncode}: {last.strip()[:200]}")
    return parse_benchmark_output(output)
