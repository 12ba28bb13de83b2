"""The native backend on real boards (issue 16): bare-metal CMake projects that compile with arm-none-eabi-gcc
and fit their boards' memory maps; ESP-IDF, Arduino and Pico SDK projects generated, their SDK-free sources
valid C."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edgekit.boards import load_board
from edgekit.build import build
from edgekit.build_folder import elf_sections
from edgekit.platforms.cmake_arm import memory_regions

HAVE_ARM = shutil.which("cmake") and shutil.which("arm-none-eabi-gcc")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ARM, reason="cmake / arm-none-eabi-gcc not installed (scripts/setup.sh)")
@pytest.mark.parametrize("board_name", ["nucleo-l4r5zi", "disco-f746ng", "nrf52840dk"])
def test_cmake_arm_native_builds_compile_and_fit(board_name, int8_model_path, tmp_path):
    report = build(str(int8_model_path("kws")), board_name, tmp_path / "b", backend="native", quiet=True)
    manifest = report["manifest"]
    assert manifest["project"] == "cmake-arm" and manifest["backend"] == "native"
    assert "TFLM_DIR" not in (tmp_path / "b" / "CMakeLists.txt").read_text()
    board = load_board(board_name)
    sizes = manifest["sizes"]
    assert 0 < sizes["flash_bytes"] <= board.flash_bytes and 0 < sizes["ram_static_bytes"] <= board.ram_bytes
    # the ELF's sections, read here independently of the build, each inside the board's flash or RAM
    regions = memory_regions(board)
    sections = elf_sections(tmp_path / "b" / manifest["firmware"])
    assert {".text", ".bss"} <= {s["name"] for s in sections}
    for s in sections:
        assert any(base <= s["address"] and s["address"] + s["bytes"] <= base + size
                   for base, size in regions.values()), s
    # the arena the native plan reserves is in .bss, in RAM
    ram_base, ram_size = regions["ram"]
    bss = next(s for s in sections if s["name"] == ".bss")
    assert ram_base <= bss["address"] and bss["bytes"] >= manifest["arena_bytes"]


@pytest.mark.parametrize("board_name,sources", [("esp32", "main"), ("rpi-pico", "src"),
                                                ("arduino-nano33ble", "edgekit_kws_ref_model")])
def test_sdk_native_projects_are_generated_without_tflm(board_name, sources, int8_model_path, tmp_path):
    out = tmp_path / "p"
    report = build(str(int8_model_path("kws")), board_name, out, backend="native", compile=False, quiet=True)
    manifest = report["manifest"]
    assert manifest["backend"] == "native" and manifest["build_hint"] and manifest["expected_firmware"]
    text = "\n".join(p.read_text() for p in out.rglob("*") if p.is_file() and p.suffix in (
        ".txt", ".yml", ".ino", ".md", ".c", ".cpp"))
    assert "esp-tflite-micro" not in text.replace("`espressif/esp-tflite-micro`", "") and "Chirale" not in text
    assert "PICO_TFLMICRO_PATH" not in text and "edgekit_backend_tflm" not in text
    folder = out / sources
    assert (folder / "model.c").is_file() and (folder / "ek_kernels.c").is_file()
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler:  # the SDK-free sources: the model, its kernels and the protocol server
        done = subprocess.run([compiler, "-std=gnu11", "-fsyntax-only", "-Wall", "-I", str(folder),
                               "-DEK_PROFILE_LAYERS", "-DEK_VERSION=\"t\"", str(folder / "model.c"),
                               str(folder / "ek_kernels.c"), str(folder / "edgekit_app.c")],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
