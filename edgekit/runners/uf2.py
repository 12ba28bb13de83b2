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


# The UF2 format (github.com/microsoft/uf2, README "File format"): 512-byte blocks, a 32-byte header of
# little-endian uint32 fields, 476 bytes of data (the payload, then padding), and a final magic number.
UF2_MAGIC_START0 = 0x0A324655  # "UF2\n"
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY_ID_PRESENT = 0x00002000
UF2_PAYLOAD = 256  # "a payload size of 256 is always correct": flash address = base + 256 x block number
UF2_DATA = 476


def bin_to_uf2(data: bytes, base: int, family_id: int) -> bytes:
    """A raw flash image as UF2 blocks of 256 payload bytes; with a family id, the familyID flag is set and the
    id fills the header's last field (zero otherwise). Padding is 0xFF, the erased state of flash, as the
    format's table says."""
    if base % 4:
        raise EdgekitError(f"UF2 flash base 0x{base:x} is not 4-byte aligned; expected the board's flash_base")
    blocks = max(1, (len(data) + UF2_PAYLOAD - 1) // UF2_PAYLOAD)
    flags = UF2_FLAG_FAMILY_ID_PRESENT if family_id else 0
    out = bytearray()
    for n in range(blocks):
        chunk = data[n * UF2_PAYLOAD:(n + 1) * UF2_PAYLOAD].ljust(UF2_PAYLOAD, b"\xff")
        header = struct.pack("<8I", UF2_MAGIC_START0, UF2_MAGIC_START1, flags, base + n * UF2_PAYLOAD,
                             UF2_PAYLOAD, n, blocks, family_id)
        out += header + chunk.ljust(UF2_DATA, b"\xff") + struct.pack("<I", UF2_MAGIC_END)
    return bytes(out)
