"""The uf2 runner: RP2040 and friends, a UF2 image copied to the bootloader's mass-storage volume."""

from __future__ import annotations

import os
import shlex
import struct
from pathlib import Path

from edgekit.build_folder import image_flash_bytes
from edgekit.errors import EdgekitError
from edgekit.runners.base import Capabilities, Runner


class Uf2Runner(Runner):
    """RP2040 and friends: copy a UF2 image to the bootloader's mass-storage volume, found by its label."""

    name = "uf2"
    capabilities = Capabilities(flash=True, reset=True)
    install_hint = "nothing (hold BOOTSEL while plugging the board in)"

    @classmethod
    def create(cls, board, build, args):
        runner = cls(board, build, args)
        runner.label = str(board.flash.get("uf2_volume_label", "RPI-RP2"))
        image = runner.firmware(suffixes=(".uf2", ".bin"))
        runner.source = image
        runner.check_size(image_flash_bytes(build, image))
        volume = find_volume(runner.label)
        if volume is None and not args.dry_run:
            raise EdgekitError(f"no mounted volume labelled {runner.label}; hold BOOTSEL while plugging the board in "
                               "and let the system mount it")
        runner.volume = volume or Path(f"/media/{runner.label}")
        return runner

    def commands(self):
        return [["cp", str(self.source), str(self.volume / (self.source.stem + ".uf2"))]]

    def flash(self, log=None):
        target = self.volume / (self.source.stem + ".uf2")
        if log:
            log("$ " + shlex.join(self.commands()[0]))
        data = self.source.read_bytes()
        if self.source.suffix != ".uf2":
            data = bin_to_uf2(data, int(self.settings.get("flash_base", 0x10000000)),
                              int(self.settings.get("uf2_family_id", 0)))
        with open(target, "wb") as f:  # the board reboots once the last block is written
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return {"copied_to": str(target), "bytes": len(data)}


def find_volume(label: str) -> Path | None:
    """The mount point of a volume with this label (Linux /dev/disk/by-label + /proc/mounts, or macOS /Volumes)."""
    by_label = Path("/dev/disk/by-label") / label
    devices = {os.path.realpath(by_label)} if by_label.exists() else set()
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    for line in mounts:
        parts = line.split()
        if len(parts) < 2:
            continue
        mount = Path(parts[1].replace("\\040", " "))
        if os.path.realpath(parts[0]) in devices or mount.name == label:
            return mount
    mac = Path("/Volumes") / label
    return mac if mac.is_dir() else None


def bin_to_uf2(data: bytes, base: int, family_id: int) -> bytes:
    """A raw flash image as UF2 blocks (512 bytes each, 256 payload bytes, family id flag when given)."""
    payload = 256
    blocks = (len(data) + payload - 1) // payload
    out = bytearray()
    for n in range(blocks):
        chunk = data[n * payload:(n + 1) * payload].ljust(payload, b"\0")
        flags = 0x2000 if family_id else 0
        header = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, flags, base + n * payload, payload, n, blocks,
                             family_id)
        out += header + chunk.ljust(476, b"\0") + struct.pack("<I", 0x0AB16F30)
    return bytes(out)
