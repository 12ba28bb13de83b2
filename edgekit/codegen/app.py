"""Former home of the host/qemu project generator, now edgekit.platforms.make (with .host and .qemu).

Re-exported here for callers that knew these names (benchmarks, tests).
"""

from edgekit.platforms.base import APP_FILES  # noqa: F401
from edgekit.platforms.make import (CompileResult, Project, compile_project, find_compiler,  # noqa: F401
                                    firmware_name, generate_app_project, generate_native_project, read_sizes)
