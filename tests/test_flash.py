"""Flash runners: the exact commands each tool would run, refusals before touching a device, and the emulator
runner on real firmware (the device application with the small stub backend, compiled for QEMU's mps2-an386)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.device import DeviceError
from edgekit.errors import EdgekitError, UsageError
from edgekit.flash import (RUNNERS, bin_to_uf2, create_runner, elf_flash_bytes, flash_build, load_build,
                           open_device, require)

STUB = Path(__file__).with_name("stub_backend.c")
HAVE_QEMU = shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")


def _manifest(folder: Path, board: str, firmware: str | None = "build/app.elf", **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"board": board, "backend": "native", "model": "model.tflite", **extra}
    if firmware:
        manifest["firmware"] = firmware
    (folder / "edgekit-build.json").write_text(json.dumps(manifest))
    return folder


def _firmware(folder: Path, relative: str, size: int = 1000) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(size))
    return path


def qemu_pids(marker: str) -> list[int]:
    """QEMU processes whose command line mentions `marker` (read from /proc, no psutil)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and any(marker.encode() in part for part in cmdline):
            try:
                state = (entry / "stat").read_text().split(") ")[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                pids.append(int(entry.name))
    return pids


# -- commands and refusals (no device) ------------------------------------------------------------------------


def test_every_runner_has_the_one_interface():
    assert set(RUNNERS) == {"qemu", "host", "esptool", "pyocd", "openocd", "uf2", "arduino-cli", "qemu-user", "adb",
                            "ssh"}
    for name, cls in RUNNERS.items():
        assert cls.name == name and cls.capabilities.flash and cls.install_hint
    assert RUNNERS["qemu"].capabilities.serial and RUNNERS["host"].capabilities.serial
    assert not RUNNERS["esptool"].capabilities.serial
    assert RUNNERS["qemu-user"].capabilities.serial and RUNNERS["ssh"].capabilities.serial
    assert RUNNERS["adb"].capabilities.benchmark and RUNNERS["ssh"].capabilities.address


def test_esptool_dry_run_writes_each_image_at_the_chips_offsets(tmp_path):
    build = _manifest(tmp_path / "b", "esp32", firmware="build/edgekit.bin")
    report = flash_build(build, port="/dev/ttyUSB7", dry_run=True)
    command = report["commands"][0]
    assert "-m esptool --chip esp32 --port /dev/ttyUSB7" in command
    assert f"write-flash 0x1000 {build}/build/bootloader/bootloader.bin 0x8000 " \
           f"{build}/build/partition_table/partition-table.bin 0x10000 {build}/build/edgekit.bin" in command
    s3 = _manifest(tmp_path / "s3", "esp32s3", firmware="build/edgekit.bin")
    assert " write-flash 0x0 " in flash_build(s3, port="/dev/ttyUSB7", dry_run=True)["commands"][0]


def test_probe_runners_dry_run(tmp_path):
    build = _manifest(tmp_path / "n", "nucleo-l4r5zi", firmware="build/app.elf")
    assert flash_build(build, dry_run=True)["commands"] == [
        f"pyocd flash --target stm32l4r5zitx {build}/build/app.elf"]
    assert flash_build(build, runner="openocd", dry_run=True)["commands"] == [
        f"openocd -f board/st_nucleo_l4.cfg -c 'program {{{build}/build/app.elf}} verify reset exit'"]
    binary = _manifest(tmp_path / "bin", "nucleo-l4r5zi", firmware="build/app.bin")
    assert "--base-address 0x8000000" in flash_build(binary, dry_run=True)["commands"][0]
    assert flash_build(binary, runner="openocd", dry_run=True)["commands"][0].endswith(
        f"'program {{{binary}/build/app.bin}} 0x8000000 verify reset exit'")
    nano = _manifest(tmp_path / "a", "arduino-nano33ble", firmware="build/sketch.ino.bin")
    assert flash_build(nano, port="/dev/ttyACM0", dry_run=True)["commands"] == [
        f"arduino-cli upload --port /dev/ttyACM0 --fqbn arduino:mbed_nano:nano33ble --input-file "
        f"{nano}/build/sketch.ino.bin"]


def test_qemu_dry_run_is_a_pasteable_command(tmp_path):
    build = _manifest(tmp_path / "q", "mps2-an386")
    command = flash_build(build, dry_run=True)["commands"][0]
    assert command.startswith("qemu-system-arm -machine mps2-an386 -nodefaults")
    assert "-icount shift=0" in command and "server=on,wait=on,nodelay=on" in command
    assert command.endswith(f"-kernel {build}/build/app.elf")


def test_runner_choice_is_checked_against_the_board(tmp_path):
    build = _manifest(tmp_path / "b", "esp32", firmware="build/edgekit.bin")
    with pytest.raises(UsageError, match="unknown runner 'jlink'"):
        flash_build(build, runner="jlink", dry_run=True)
    with pytest.raises(UsageError, match="esp32 cannot be flashed with pyocd; its runners are: esptool"):
        flash_build(build, runner="pyocd", dry_run=True)
    with pytest.raises(UsageError, match="esptool needs --port"):
        flash_build(build)


def test_oversized_image_is_refused_before_touching_the_device(tmp_path):
    build = _manifest(tmp_path / "big", "rpi-pico", firmware="build/app.elf",
                      sizes={"text": 2_000_000, "data": 200_000, "bss": 0})
    with pytest.raises(EdgekitError, match="image needs 2,200,000 bytes of flash but rpi-pico has 2,097,152"):
        create_runner(load_build(build), "pyocd", dry_run=True)
    esp = _manifest(tmp_path / "esp", "esp32", firmware="build/edgekit.bin")
    for image in ("build/bootloader/bootloader.bin", "build/partition_table/partition-table.bin"):
        _firmware(esp, image)
    _firmware(esp, "build/edgekit.bin", 1_100_000)
    with pytest.raises(EdgekitError, match="1,100,000 bytes of app partition but esp32 has 1,048,576"):
        flash_build(esp, port="/dev/ttyEDGEKIT0")  # refused before esptool opens the (absent) port


def test_missing_tools_and_files_say_how_to_fix(tmp_path):
    with pytest.raises(EdgekitError, match="program edgekit-no-such-tool not found; install it with pip install x"):
        require("edgekit-no-such-tool", "pip install x")
    with pytest.raises(EdgekitError, match="is not a build folder"):
        flash_build(tmp_path)
    build = _manifest(tmp_path / "q", "mps2-an386")
    with pytest.raises(EdgekitError, match="firmware .*app.elf not found"):
        flash_build(build)
    (build / "edgekit-build.json").write_text("{not json")
    with pytest.raises(EdgekitError, match="not valid JSON"):
        flash_build(build)


def test_cli_dry_run_and_errors(tmp_path):
    build = _manifest(tmp_path / "n", "nucleo-l4r5zi")
    result = CliRunner().invoke(cli, ["flash", str(build), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["commands"][0].startswith("pyocd flash --target stm32l4r5zitx")
    done = subprocess.run([sys.executable, "-m", "edgekit", "flash", str(tmp_path / "nowhere")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_uf2_blocks():
    data = bytes(range(256)) * 3 + b"\x01"
    blob = bin_to_uf2(data, 0x10000000, 0xE48BFF56)
    assert len(blob) == 4 * 512
    for n in range(4):
        block = blob[n * 512:(n + 1) * 512]
        magic0, magic1, flags, address, size, number, total, family = struct.unpack_from("<8I", block)
        assert (magic0, magic1, struct.unpack_from("<I", block, 508)[0]) == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert (flags, address, size, number, total, family) == (0x2000, 0x10000000 + 256 * n, 256, n, 4,
                                                                0xE48BFF56)
        assert block[32:32 + 256] == data[n * 256:(n + 1) * 256].ljust(256, b"\xff")


def test_uf2_follows_the_formats_documented_layout():
    """The examples of the UF2 README (github.com/microsoft/uf2): the block starts with the text "UF2\n" and
    the bytes 57 51 5d 9e, ends with 30 6f b1 0a (its last byte forced to '\n'); data is padded with 0xFF; with
    256-byte payloads the file is twice the flash it covers (as CURRENT.UF2 is); the familyID flag is 0x2000 and
    RP2040's id (uf2families.json) is 0xe48bff56; without a family the field is zero and no flag is set."""
    image = bytes((i * 7) & 0xFF for i in range(4096))
    blob = bin_to_uf2(image, 0x10000000, 0xE48BFF56)
    assert len(blob) == 2 * len(image)
    first = blob[:512]
    assert first[:4] == b"UF2\n" and first[4:8] == bytes.fromhex("57515d9e")
    assert first[508:] == bytes.fromhex("306fb10a") and first[511:] == b"\n"
    assert first[8:12] == bytes.fromhex("00200000") and first[28:32] == bytes.fromhex("56ff8be4")
    assert first[12:16] == bytes.fromhex("00000010")  # 0x10000000, little endian
    assert first[32 + 256:508] == b"\xff" * 220
    # the payloads, in block order, give back the image, each at its address
    payloads = {struct.unpack_from("<I", blob, i + 12)[0]: blob[i + 32:i + 32 + 256] for i in range(0, len(blob), 512)}
    assert b"".join(payloads[a] for a in sorted(payloads)) == image
    plain = bin_to_uf2(b"\x01\x02\x03", 0x0, 0)
    assert len(plain) == 512 and struct.unpack_from("<I", plain, 8)[0] == 0 and plain[28:32] == b"\0" * 4
    assert plain[32:36] == b"\x01\x02\x03\xff"
    with pytest.raises(EdgekitError, match="not 4-byte aligned"):
        bin_to_uf2(image, 0x10000002, 0)


def test_elf_sections_read_with_pyelftools(stub_builds):
    """Sections of a real arm-none-eabi ELF (pyelftools): text in the file, bss only in RAM; a file that is not
    an ELF is refused in one line."""
    from edgekit.build_folder import elf_sections

    build = load_build(stub_builds["mps2-an386"])
    sections = {s["name"]: s for s in elf_sections(build.firmware)}
    assert sections[".text"]["in_file"] and sections[".text"]["bytes"] > 0
    assert any(not s["in_file"] for s in sections.values())
    with pytest.raises(EdgekitError, match="not an ELF"):
        elf_sections(STUB)


def test_uf2_runner_copies_to_the_labelled_volume(tmp_path, monkeypatch):
    import edgekit.runners.uf2 as flash  # the uf2 runner looks its volume up

    volume = tmp_path / "RPI-RP2"
    volume.mkdir()
    monkeypatch.setattr(flash, "find_volume", lambda label: volume if label == "RPI-RP2" else None)
    build = _manifest(tmp_path / "p", "rpi-pico", firmware="build/app.bin")
    _firmware(build, "build/app.bin", 600)
    report = flash_build(build)
    assert report["copied_to"] == str(volume / "app.uf2")
    assert (volume / "app.uf2").stat().st_size == 3 * 512
    monkeypatch.setattr(flash, "find_volume", lambda label: None)
    with pytest.raises(EdgekitError, match="no mounted volume labelled RPI-RP2; hold BOOTSEL"):
        flash_build(build)


# -- the emulator, on real firmware ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_builds(tmp_path_factory):
    """The device application around tests/stub_backend.c, compiled for QEMU's mps2-an386 and for the host."""
    if not HAVE_QEMU:
        pytest.skip("qemu-system-arm / arm-none-eabi-gcc not installed")
    from edgekit.codegen.app import compile_project, generate_app_project

    root = tmp_path_factory.mktemp("stub")
    builds = {}
    for board in ("mps2-an386", "host"):
        project = root / board
        generate_app_project(board, project, lambda model_dir: shutil.copyfile(STUB, model_dir / STUB.name))
        result = compile_project(project, board)
        firmware = str(result.firmware.relative_to(project))
        builds[board] = _manifest(project, board, firmware=firmware, sizes=result.sizes)
    return builds


def test_elf_flash_bytes_match_arm_size(stub_builds):
    build = load_build(stub_builds["mps2-an386"])
    assert elf_flash_bytes(build.firmware) == build.sizes["text"] + build.sizes["data"]
    assert elf_flash_bytes(STUB) is None


@pytest.mark.parametrize("board", ["mps2-an386", "host"])
def test_flash_starts_checks_and_stops(stub_builds, board, monkeypatch):
    build = stub_builds[board]
    monkeypatch.chdir(build.parent)  # the build folder as people type it: a relative path
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["flash", build.name, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["booted"] and (report["input_bytes"], report["output_bytes"]) == (12, 4)
    assert time.monotonic() - started < 5
    assert qemu_pids(str(build)) == []


def test_stub_answers_over_the_emulated_uart(stub_builds):
    with open_device(load_build(stub_builds["mps2-an386"])) as session:
        device = session.device
        info = device.info()
        assert (info.backend, info.input_bytes, info.ticks_per_second) == ("native", 12, 25_000_000)
        device.load_input(bytes([1, 2, 3, 4, 5, 6, 250, 6, 0, 127, 127, 127]))
        result = device.infer(3, 1)
        assert result.results == [6, 15, 0, 125]  # sums of three, wrapped to int8
        ticks, runs = device.ticks()
        assert runs == 3 and ticks > 0
        assert [name for _, name, _ in device.layers()] == ["SUM", "COPY"]
        assert device.memory()["stack"] > 0  # stack painting on the bare-metal platform


def test_qemu_killed_mid_run_is_a_clear_error(stub_builds):
    build = load_build(stub_builds["mps2-an386"])
    session = open_device(build)
    try:
        session.device.load_input(bytes(12))
        killer = threading.Timer(0.3, lambda: os.kill(session.process.pid, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        with pytest.raises(DeviceError, match="lost the connection .*QEMU was killed by signal 9"):
            session.device.infer(1_000_000, 0, timeout=60)  # minutes of emulated work, cut after 0.3 s
        assert time.monotonic() - started < 3
    finally:
        session.close()
    assert qemu_pids(str(build.dir)) == []


def test_no_emulator_outlives_a_killed_edgekit(stub_builds, tmp_path):
    """A profile run killed with SIGKILL (no cleanup code runs) must not leave QEMU behind."""
    build = stub_builds["mps2-an386"]
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from edgekit.flash import load_build, open_device\n"
        f"session = open_device(load_build({str(build)!r}))\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        assert len(qemu_pids(str(build))) == 1
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 3
        while qemu_pids(str(build)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert qemu_pids(str(build)) == []
    finally:
        holder.kill()
        for pid in qemu_pids(str(build)):  # only when the test failed: do not leak the orphan
            os.kill(pid, signal.SIGKILL)


def test_wrong_port_is_a_clear_error(stub_builds):
    build = load_build(stub_builds["mps2-an386"])
    started = time.monotonic()
    with pytest.raises(DeviceError, match="cannot open serial port /dev/ttyEDGEKIT9"):
        open_device(build, port="/dev/ttyEDGEKIT9")
    with pytest.raises(DeviceError, match="cannot open serial port socket://127.0.0.1:1:"):
        open_device(build, port="socket://127.0.0.1:1")
    assert time.monotonic() - started < 3


def test_hardware_boards_need_a_port_to_profile(tmp_path):
    build = load_build(_manifest(tmp_path / "n", "nucleo-l4r5zi"))
    with pytest.raises(UsageError, match="nucleo-l4r5zi is reached through its serial port; pass --port"):
        open_device(build)


def test_esptool_uses_idf_flasher_args_and_reports_its_failure(tmp_path):
    """After `idf.py build`: the images and offsets ESP-IDF wrote; esptool really runs (and fails on no port)."""
    build = _manifest(tmp_path / "e", "esp32s3", firmware=None)
    idf = build / "build"
    files = {"0x0": "bootloader/bootloader.bin", "0x8000": "partition_table/partition-table.bin",
             "0x10000": "edgekit_app.bin"}
    for name in files.values():
        _firmware(idf, name, 4096)
    (idf / "flasher_args.json").write_text(json.dumps({"flash_files": files}))
    command = flash_build(build, port="/dev/ttyEDGEKIT0", dry_run=True)["commands"][0]
    assert command.endswith(f"write-flash 0x0 {idf}/bootloader/bootloader.bin 0x8000 "
                            f"{idf}/partition_table/partition-table.bin 0x10000 {idf}/edgekit_app.bin")
    lines = []
    with pytest.raises(EdgekitError, match="esptool failed with exit status 2: .*could not open port /dev/ttyEDGEKIT0"):
        flash_build(build, port="/dev/ttyEDGEKIT0", log=lines.append)
    assert lines[0].startswith("$ ") and "write-flash" in lines[0]


# -- TFLite Micro projects generated here, built by hand ---------------------------------------------------------


@pytest.fixture(scope="module")
def unbuilt_projects(int8_model_path, tmp_path_factory):
    """KWS as a generated but uncompiled TFLite Micro project for one board of each family."""
    from edgekit.build import build

    root = tmp_path_factory.mktemp("unbuilt")
    boards = ("esp32", "nucleo-l4r5zi", "rpi-pico", "arduino-nano33ble")
    return {board: Path(build(int8_model_path("kws"), board, root / board, compile=False, quiet=True)["folder"])
            for board in boards}


def test_dry_run_of_an_unbuilt_project_names_where_the_hand_build_puts_the_image(unbuilt_projects):
    for board, folder in unbuilt_projects.items():
        manifest = json.loads((folder / "edgekit-build.json").read_text())
        assert manifest["firmware"] is None and manifest["expected_firmware"].startswith("build/"), board
        assert manifest["expected_firmware"] in (folder / "README.md").read_text(), board
    esp, nucleo, pico, nano = (unbuilt_projects[b] for b in ("esp32", "nucleo-l4r5zi", "rpi-pico",
                                                             "arduino-nano33ble"))
    # exactly what the README promises: `edgekit flash DIR --port PORT --dry-run` prints the esptool command
    done = subprocess.run([sys.executable, "-m", "edgekit", "flash", str(esp), "--port", "/dev/ttyUSB0",
                           "--dry-run", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    command = json.loads(done.stdout)["commands"][0]
    assert "-m esptool --chip esp32 --port /dev/ttyUSB0" in command
    assert command.endswith(f"0x10000 {esp}/build/edgekit_kws_ref_model.bin")
    assert f"0x1000 {esp}/build/bootloader/bootloader.bin" in command
    report = flash_build(nucleo, dry_run=True)
    assert report["commands"] == [f"pyocd flash --target stm32l4r5zitx {nucleo}/build/edgekit_kws_ref_model.elf"]
    assert report["built"] is False and report["image"] == f"{nucleo}/build/edgekit_kws_ref_model.elf"
    assert "not built yet" not in done.stderr  # --json: one document, no notes
    human = subprocess.run([sys.executable, "-m", "edgekit", "flash", str(nucleo), "--dry-run"], capture_output=True,
                           text=True)
    assert human.stdout.splitlines() == report["commands"]
    assert f"note: {nucleo} is not built yet" in " ".join(human.stderr.split())
    assert flash_build(nucleo, runner="openocd", dry_run=True)["commands"] == [
        f"openocd -f board/st_nucleo_l4.cfg -c 'program {{{nucleo}/build/edgekit_kws_ref_model.elf}} verify "
        "reset exit'"]
    assert flash_build(pico, dry_run=True)["commands"][0].startswith(
        f"cp {pico}/build/edgekit_kws_ref_model.uf2 ")
    # a probe cannot program a .uf2: it takes the ELF the Pico SDK writes beside it
    assert flash_build(pico, runner="pyocd", dry_run=True)["commands"] == [
        f"pyocd flash --target rp2040 {pico}/build/edgekit_kws_ref_model.elf"]
    assert flash_build(nano, port="/dev/ttyACM0", dry_run=True)["commands"] == [
        "arduino-cli upload --port /dev/ttyACM0 --fqbn arduino:mbed_nano:nano33ble --input-file "
        f"{nano}/build/edgekit_kws_ref_model.ino.elf"]


def test_flashing_an_unbuilt_project_says_to_build_it_first(unbuilt_projects):
    for board, folder in unbuilt_projects.items():
        hint = json.loads((folder / "edgekit-build.json").read_text())["build_hint"]
        done = subprocess.run([sys.executable, "-m", "edgekit", "flash", str(folder), "--port", "/dev/ttyEDGEKIT0"],
                              capture_output=True, text=True)
        assert done.returncode == 1 and done.stdout == "", board
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"{folder} is not built yet (no build/" in done.stderr and f"build it first: {hint}" in done.stderr
        assert hint in (folder / "README.md").read_text(), board


def test_a_hand_built_image_is_found_without_a_rebuild(unbuilt_projects, tmp_path, monkeypatch):
    """What the Pico SDK would write, put where it writes it: `edgekit flash DIR` copies it to the board."""
    import shutil as sh

    import edgekit.runners.uf2 as flash  # the uf2 runner looks its volume up

    folder = tmp_path / "pico"
    sh.copytree(unbuilt_projects["rpi-pico"], folder)
    image = bin_to_uf2(bytes(range(256)) * 40, 0x10000000, 0xE48BFF56)
    _firmware(folder, "build/edgekit_kws_ref_model.uf2").write_bytes(image)
    volume = tmp_path / "RPI-RP2"
    volume.mkdir()
    monkeypatch.setattr(flash, "find_volume", lambda label: volume if label == "RPI-RP2" else None)
    report = flash_build(folder)
    assert report["built"] is True and report["image_bytes"] == 40 * 256
    assert (volume / "edgekit_kws_ref_model.uf2").read_bytes() == image
    # ESP-IDF: the offsets of its flasher_args.json, the app partition checked against the real .bin
    esp = tmp_path / "esp"
    sh.copytree(unbuilt_projects["esp32"], esp)
    files = {"0x1000": "bootloader/bootloader.bin", "0x8000": "partition_table/partition-table.bin",
             "0x10000": "edgekit_kws_ref_model.bin"}
    for name in files.values():
        _firmware(esp / "build", name, 2048)
    (esp / "build" / "flasher_args.json").write_text(json.dumps({"flash_files": files}))
    assert flash_build(esp, port="/dev/ttyUSB0", dry_run=True)["commands"][0].endswith(
        f"0x10000 {esp}/build/edgekit_kws_ref_model.bin")
    _firmware(esp / "build", "edgekit_kws_ref_model.bin", 1_100_000)
    with pytest.raises(EdgekitError, match="1,100,000 bytes of app partition but esp32 has 1,048,576"):
        flash_build(esp, port="/dev/ttyEDGEKIT0")
