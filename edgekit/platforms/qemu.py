"""The qemu platform: bare-metal Cortex-M firmware for QEMU's Arm machines (mps2-an385/386/500, mps3-an547).

Its layer drives the CMSDK APB UART and SysTick named in the board's [emulator] table; the linker script
follows the emulated memory map. Time counts instructions there (-icount shift=0).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from edgekit.codegen.common import c_comment, c_string, render
from edgekit.errors import EdgekitError
from edgekit.platforms.make import COMMON_FLAGS, MakePlatform, write
from edgekit.resources import templates_dir

ARM_GCC = "arm-none-eabi-gcc"
ARM_SIZE = "arm-none-eabi-size"
ARM_INSTALL_HINT = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
DEFAULT_STACK_BYTES = 16 * 1024
BAUD = 115_200


def stack_bytes(board) -> int:
    stack = int(board.data.get("stack_bytes", board.emulator.get("stack_bytes", DEFAULT_STACK_BYTES)))
    return (stack + 7) // 8 * 8


def _linker_text(text: str) -> str:
    """Text safe inside a linker-script string: no quotes, no backslashes, printable ASCII."""
    return re.sub(r"[^0-9A-Za-z _.,:+()\-]", "_", str(text))


def cortex_m_context(board) -> dict:
    emulator = board.emulator
    if emulator.get("uart") != "cmsdk":
        raise EdgekitError(f"board {board.name} has uart '{emulator.get('uart')}'; the Cortex-M platform drives "
                           f"the CMSDK APB UART (uart = \"cmsdk\" in its [emulator] table)")
    for key in ("code_base", "code_bytes", "ram_base", "ram_bytes", "uart_base", "uart_rx_irq", "systick_hz"):
        if not isinstance(emulator.get(key), int):
            raise EdgekitError(f"board {board.name} lacks the integer [emulator] key '{key}'; see boards/README.md")
    stack = stack_bytes(board)
    rx_irq = emulator["uart_rx_irq"]
    name = _linker_text(board.name)
    return dict(
        board_name=c_string(board.name),
        board_comment=c_comment(f"{board.name}, {board.description}"),
        board_file=c_comment(f"{board.name}.toml"),
        code_base=emulator["code_base"],
        code_region_bytes=max(emulator["code_bytes"], board.flash_bytes),
        ram_base=emulator["ram_base"],
        ram_region_bytes=max(emulator["ram_bytes"], board.ram_bytes),
        flash_bytes=board.flash_bytes,
        ram_bytes=board.ram_bytes,
        stack_bytes=stack,
        uart_base=emulator["uart_base"],
        uart_rx_irq=rx_irq,
        uart_bauddiv=max(16, emulator["systick_hz"] // BAUD),
        systick_hz=emulator["systick_hz"],
        num_irqs=max(32, (rx_irq + 8) // 8 * 8),
        ram_message=f"edgekit: data + bss + {stack} bytes of stack do not fit the {board.ram_bytes} bytes of RAM "
                    f"of board {name}",
        flash_message=f"edgekit: code + constants + data do not fit the {board.flash_bytes} bytes of flash of "
                      f"board {name}",
    )



def find_arm_compiler() -> tuple[str, str]:
    gcc = shutil.which(ARM_GCC)
    if gcc is None:
        raise EdgekitError(f"{ARM_GCC} not found; install it with: {ARM_INSTALL_HINT}")
    size = shutil.which(ARM_SIZE)
    if size is None:
        raise EdgekitError(f"{ARM_SIZE} not found; install it with: {ARM_INSTALL_HINT}")
    return gcc, size


class QemuPlatform(MakePlatform):
    name = "qemu"
    libraries = ("tflite-micro",)  # built once into a cache (edgekit.tflm_library, platforms.make_tflm)
    compiles_libraries = True
    kernels = "cmsis-nn"
    firmware = "build/firmware.elf"
    compiler_hint = ARM_GCC

    def layer(self, board, platform_dir: Path) -> None:
        context = cortex_m_context(board)
        source = templates_dir() / "platform/cortex-m"
        shutil.copyfile(source / "ek_cortex_m.h", platform_dir / "ek_cortex_m.h")
        shutil.copyfile(source / "ek_platform_cmsdk.c", platform_dir / "ek_platform_cmsdk.c")
        write(platform_dir / "ek_board.h", render("platform/cortex-m/ek_board.h.j2", **context))
        write(platform_dir / "startup.c", render("platform/cortex-m/startup.c.j2", **context))
        write(platform_dir / "link.ld", render("platform/cortex-m/link.ld.j2", **context))

    def flags(self, board):
        cpu = [str(flag) for flag in board.toolchain.get("cflags", [])]
        compile_flags = cpu + COMMON_FLAGS + ["-ffunction-sections", "-fdata-sections", "-fno-common"]
        link_flags = ["-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Tplatform/link.ld",
                      "-Wl,--gc-sections", "-Wl,-Map=build/firmware.map", "-lm"]
        return compile_flags, link_flags

    def makefile_context(self, board) -> dict:
        return {"host": False, "machine": c_comment(board.emulator.get("machine", ""))}

    def find_compiler(self, board):
        return find_arm_compiler()

    def extra_sizes(self, board) -> dict:
        return {"stack_bytes": stack_bytes(board)}
