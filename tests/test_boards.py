"""Board files: every one loads with sane numbers, boards/README.md documents every key, bad files fail clearly."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgekit.boards import REQUIRED, all_boards, load_board, load_board_file
from edgekit.errors import EdgekitError

REPO = Path(__file__).resolve().parent.parent
BOARD_FILES = sorted((REPO / "boards").glob("*.toml"))
RUNNERS = {"qemu", "host", "esptool", "pyocd", "openocd", "uf2", "arduino-cli", "qemu-user", "ssh", "adb"}
PROJECTS = {"esp-idf", "cmake-arm", "arduino", "pico-sdk", "qemu", "host", "linux", "android"}
KIB, MIB = 1024, 1024 * 1024


def test_there_are_boards_of_every_kind():
    boards = all_boards()
    assert [p.stem for p in BOARD_FILES] == list(boards)
    assert {b.arch for b in boards.values()} == {"arm", "xtensa", "riscv", "aarch64", "host"}
    assert any(b.emulated for b in boards.values())
    assert {b.project for b in boards.values()} == PROJECTS


@pytest.mark.parametrize("path", BOARD_FILES, ids=lambda p: p.stem)
def test_board_file_is_complete_and_sane(path):
    board = load_board_file(path)
    assert board.name == path.stem and load_board(board.name) == board
    assert board.arch in {"arm", "xtensa", "riscv", "aarch64", "host"} and board.project in PROJECTS
    assert board.description and board.mcu and board.core
    assert board.default_runner in board.flash["runners"] and set(board.flash["runners"]) <= RUNNERS
    if board.arch == "aarch64":  # phones and Linux boards: gigabytes, a cross compiler, LiteRT's variants
        assert board.project in {"linux", "android"} and board.is_64bit and board.serial["baud"] == 0
        assert board.ram_bytes >= 256 * MIB and board.toolchain.get("install")
        assert ("prefix" in board.toolchain) == (board.project == "linux")
        mobile = board.data.get("mobile")
        assert mobile is None or (mobile["accelerator"] in {"xnnpack", "gpu", "npu"}
                                  and 0 < mobile["tolerance_points"] <= 5)
        return
    runtimes = (board.runtime_flash_bytes, board.runtime_ram_bytes)
    assert all(set(r) == {"tflm", "native"} for r in runtimes)
    if board.arch == "host":
        assert board.default_runner == "host" and board.serial["baud"] == 0
        return
    # A microcontroller: tens of KiB to a few MiB of RAM, flash at least as large as its code estimates.
    assert 16 * KIB <= board.ram_bytes <= 8 * MIB
    assert 128 * KIB <= board.flash_bytes <= 64 * MIB
    assert 1_000_000 <= board.clock_hz <= 1_000_000_000
    assert board.psram_bytes == 0 or board.psram_bytes >= MIB
    assert board.runtime_ram_estimate("native") <= board.runtime_ram_estimate("tflm") < board.ram_bytes // 4
    assert board.runtime_flash_estimate("native") <= board.runtime_flash_estimate("tflm") < board.flash_bytes // 2
    assert board.serial["baud"] in (9600, 115200, 230400, 460800, 921600)
    if board.arch == "arm":
        cflags = board.toolchain["cflags"]
        assert f"-mcpu={board.core.removesuffix('f').removesuffix('plus')}" in cflags[0] and "-mthumb" in cflags
    if board.emulated:
        emulator = board.emulator
        assert board.default_runner == "qemu" and board.project == "qemu"
        assert emulator["code_bytes"] >= board.flash_bytes and emulator["ram_bytes"] >= board.ram_bytes
        assert emulator["systick_hz"] == board.clock_hz
    if board.project == "esp-idf":
        flash = board.flash
        assert flash["app_offset"] + flash["app_partition_bytes"] <= board.flash_bytes
        assert flash["partition_table_offset"] < flash["app_offset"]
        assert board.data["idf"]["target"] == flash["chip"] == board.name


def test_readme_documents_every_key():
    readme = (REPO / "boards" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_0-9]+(?:\.[a-z_0-9]+)?)`", readme))
    sections = set(re.findall(r"## `\[([a-z_]+)\]`", readme))
    for path in BOARD_FILES:
        for key, value in tomllib.loads(path.read_text()).items():
            if isinstance(value, dict):
                assert key in sections or any(d.startswith(f"{key}.") for d in documented), (path.name, key)
                for sub in value:
                    assert sub in documented or f"{key}.{sub}" in documented, (path.name, f"{key}.{sub}")
            else:
                assert key in documented, (path.name, key)


def write_board(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def valid_text(name: str) -> str:
    return (REPO / "boards" / "nrf52840dk.toml").read_text().replace('name = "nrf52840dk"', f'name = "{name}"')


def test_a_board_file_without_a_required_key_names_it(tmp_path):
    for key in ("ram_bytes", "project"):
        text = "\n".join(line for line in valid_text("mine").splitlines() if not line.startswith(f"{key} ="))
        with pytest.raises(EdgekitError, match=rf"^board file mine\.toml lacks {key}; see boards/README\.md$"):
            load_board_file(write_board(tmp_path, "mine", text))
    assert "ram_bytes" in REQUIRED


def test_a_board_file_whose_name_differs_from_its_file_is_refused(tmp_path):
    write_board(tmp_path, "good", valid_text("good"))
    write_board(tmp_path, "other", valid_text("nrf52840dk"))
    with pytest.raises(EdgekitError, match="board file other.toml names itself 'nrf52840dk'; the name must match"):
        all_boards(tmp_path)
    (tmp_path / "other.toml").unlink()
    assert list(all_boards(tmp_path / ".")) == ["good"]  # a new folder argument, not the cached failure


@pytest.mark.parametrize("change, message", [
    (("ram_bytes = 262_144", 'ram_bytes = "256K"'), "ram_bytes is '256K'; expected a whole number >= 0"),
    (("ram_bytes = 262_144", "ram_bytes = -1"), "ram_bytes is -1; expected a whole number >= 0"),
    (("tflm = 90_000", "tflm = 9.5"), "runtime_flash_bytes.tflm is 9.5; expected a whole number of bytes"),
    (('core = "cortex-m4f"', 'core = ""'), "core is ''; expected a non-empty string"),
    (("psram_bytes = 0", 'psram_bytes = 0\nemulator = "qemu"'), "emulator is 'qemu'; expected a [emulator] table"),
    (('name = "mine"', 'name = "mine'), "board file mine.toml is not valid TOML"),
])
def test_a_board_file_with_a_bad_value_gets_one_clear_line(tmp_path, change, message):
    text = valid_text("mine")
    assert change[0] in text
    with pytest.raises(EdgekitError) as error:
        load_board_file(write_board(tmp_path, "mine", text.replace(change[0], change[1], 1)))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_boards_command_lists_every_file():
    listed = subprocess.run([sys.executable, "-m", "edgekit", "boards", "--json"], capture_output=True, text=True,
                            check=True)
    boards = json.loads(listed.stdout)["boards"]
    assert [b["name"] for b in boards] == [p.stem for p in BOARD_FILES]
    nucleo = next(b for b in boards if b["name"] == "nucleo-l4r5zi")
    assert nucleo["ram_bytes"] == 655_360 and nucleo["flash"]["default_runner"] == "pyocd"
    table = subprocess.run([sys.executable, "-m", "edgekit", "boards"], capture_output=True, text=True, check=True)
    for path in BOARD_FILES:
        assert path.stem in table.stdout
    assert "640" in table.stdout  # nucleo's RAM in KiB


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(EdgekitError) as error:
        load_board("stm32")
    message = str(error.value)
    assert message.startswith("unknown board 'stm32'; expected one of: ")
    assert all(p.stem in message for p in BOARD_FILES)
