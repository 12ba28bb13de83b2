"""Outputs are written to a temporary place and moved into position only when complete.

A command that fails half-way (bad input, Ctrl-C) must leave no half-written file or folder behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import EdgekitError


@contextmanager
def atomic_output_dir(destination, *, overwrite: bool = True):
    """Yield a temporary folder beside `destination`; on success it replaces `destination`, on error it vanishes.

    So a failed generation never leaves a half-written project behind.
    """
    destination = Path(destination)
    parent = destination.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() and not destination.is_dir():
        raise EdgekitError(f"output {destination} exists and is not a folder; expected a folder path")
    if destination.exists() and not overwrite:
        raise EdgekitError(f"output folder {destination} already exists")
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if destination.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=parent))
        os.replace(destination, trash / "old")
        os.replace(staging, destination)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, destination)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write a file through a temporary neighbour and a rename: never a half-written output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
