"""Former home of the host/qemu project generator, now edgekit.platforms.make (with .host and .qemu).

Re-exported here for callers that knew these names (benchmarks, tests).
"""

from edgekit.platforms.base import APP_FILES  # noqa: F401
from edgekit.platforms.make import (CompileResult, Project, compile_project, find_compiler,  # noqa: F401
                                    firmware_name, generate_app_project, generate_native_project, read_sizes)

# The private helpers edgekit.codegen.tflm_app (TFLite Micro on host/QEMU) borrows, until it becomes the
# host/qemu platforms' build of the declared tflite-micro library.


def _write_platform(board, platform_dir):
    from edgekit.platforms import platform_for

    platform_for(board).layer(board, platform_dir)


def _flags(board):
    from edgekit.platforms import platform_for

    return platform_for(board).flags(board)


def _version():
    from edgekit.platforms.base import version_text

    return version_text()


def _stack_bytes(board):
    from edgekit.platforms.qemu import stack_bytes

    return stack_bytes(board)


def _first_problem(log):
    from edgekit.platforms.make import first_problem

    return first_problem(log)
