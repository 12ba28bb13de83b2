"""The esptool runner: ESP32 family, bootloader, partition table and app at the offsets ESP-IDF wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.runners.base import Capabilities, Runner, require_module


class EsptoolRunner(Runner):
    """ESP32 family: bootloader, partition table and app at the chip's offsets, with esptool v5's write-flash."""

    name = "esptool"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "pip install esptool"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        if not args.dry_run:
            require_module("esptool", cls.install_hint)
        settings = board.flash
        runner.port = runner.need_port()
        runner.chip = str(settings.get("chip", board.name))
        images = build.manifest.get("flash_images")
        from_idf = _idf_flash_files(build.dir / build.manifest.get("expected_flasher_args",
                                                                   "build/flasher_args.json"))
        if from_idf:  # what `idf.py build` says it wrote, at which offsets: the most exact source
            runner.images = from_idf
            app = max(from_idf)[1]
        elif images:  # [{offset, file}] written by the build, when it knows better than the defaults
            runner.images = [(int(str(i["offset"]), 0), build.dir / i["file"]) for i in images]
            app = max(runner.images)[1]
        else:
            app = runner.firmware(suffixes=(".bin",))
            root = app.parent
            runner.images = [
                (int(settings.get("bootloader_offset", 0x1000)), root / "bootloader" / "bootloader.bin"),
                (int(settings.get("partition_table_offset", 0x8000)), root / "partition_table" / "partition-table.bin"),
                (int(settings.get("app_offset", 0x10000)), app),
            ]
        runner.image_file = app
        if not args.dry_run:
            for _, path in runner.images:
                if not path.is_file():
                    raise EdgekitError(f"{path} not found; build the ESP-IDF project first (idf.py build)")
            runner.check_size(app.stat().st_size, int(settings.get("app_partition_bytes", board.flash_bytes)),
                              "app partition")
        return runner

    def commands(self):
        baud = str(self.settings.get("flash_baud", 460800))
        command = [sys.executable, "-m", "esptool", "--chip", self.chip, "--port", self.port, "--baud", baud,
                   "write-flash"]
        for offset, path in self.images:
            command += [hex(offset), str(path)]
        return [command]


def _idf_flash_files(path: Path) -> list[tuple[int, Path]] | None:
    """[(offset, file)] from ESP-IDF's build/flasher_args.json, sorted by offset, or None without one."""
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["flash_files"]
        return sorted((int(offset, 0), path.parent / name) for offset, name in files.items())
    except (json.JSONDecodeError, KeyError, ValueError, AttributeError, TypeError):
        raise EdgekitError(f"{path} is not ESP-IDF's flasher_args.json; rebuild with idf.py build") from None
