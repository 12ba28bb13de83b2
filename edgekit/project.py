"""One (backend, platform) pair into one folder: both sides asked first, then backend, then platform.

`check_pair` is the only place a pair is accepted or refused; edgekit.routes computes, for a refusal, a route
that is accepted. `write_project` is what `edgekit build` runs in its staging folder.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.backends import get_backend
from edgekit.backends.base import Verdict
from edgekit.platforms import platform_for
from edgekit.platforms.base import PlatformProject


def check_pair(graph, board, backend_name: str) -> Verdict:
    """Whether `backend_name` can run `graph` and the board's platform can build it: the backend's side, then
    the platform's (which reads only the backend's declaration)."""
    backend = get_backend(backend_name)
    verdict = backend.supports(graph)
    if not verdict:
        return verdict
    return platform_for(board).supports(graph, board, backend)


def write_project(graph, board, backend_name: str, root, *, ram_budget: int | None = None,
                  kernels: str | None = None, **options) -> PlatformProject:
    """The backend's sources then the platform's scaffold into the existing folder `root`; `kernels`: those of
    the library tree the build was given (else the platform's)."""
    backend, platform = get_backend(backend_name), platform_for(board)
    root = Path(root)
    model_dir = root / platform.model_dir(board, graph)
    model_dir.mkdir(parents=True, exist_ok=True)
    output = backend.write(graph, model_dir, platform.target(board, ram_budget, kernels), **options)
    return platform.generate(graph, board, root, output)
