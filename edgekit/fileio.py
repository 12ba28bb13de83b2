"""Outputs are written to a temporary place and moved into position only when complete.

A command that fails half-way (bad input, Ctrl-C) must leave no half-written file or folder behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
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
    with signals_deferred():  # an interrupt between the two renames would lose both folders
        if destination.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=parent))
            os.replace(destination, trash / "old")
            os.replace(staging, destination)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, destination)


@contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM until the block is done (they are delivered after it): for the few renames that
    must happen together. Outside the main thread (where Python handles signals) it does nothing."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def output_lock(destination):
    """An exclusive, non-blocking lock on an output folder (flock on the sibling `.NAME.lock`, removed after).

    A second command writing the same folder fails at once, naming the process that holds it."""
    destination = Path(destination)
    parent = destination.absolute().parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise EdgekitError(f"output {destination}: {folder} is a file, not a folder; expected a folder path")
            break
    if destination.exists() and not destination.is_dir():
        raise EdgekitError(f"output {destination} exists and is not a folder; expected a folder path")
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".{destination.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise EdgekitError(f"another edgekit build is writing {destination} (pid {holder}); wait for it "
                                   "to finish or pick another output folder") from None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        with signals_deferred():
            Path(path).unlink(missing_ok=True)  # while still locked: nobody else holds this inode
            os.close(fd)


class FolderSwap:
    """Replace an output folder with a new one that must be completed in place (compiled where it will stay:
    CMake, ESP-IDF and make record absolute paths, so a compiled tree cannot be moved).

    The new folder is generated in a hidden sibling; the old one is set aside (renamed to a hidden sibling), the
    new one moved to the final path and completed there, and `complete` (the manifest) is written last. Only
    then is the old folder deleted. Until that point the new folder carries a marker file, so that `recover()`
    (after any failure, interrupt or a killed run) can tell an unfinished folder from a finished one: it removes
    the unfinished one and puts the old one back. Hold `output_lock` around it.
    """

    MARKER = ".edgekit-incomplete"

    def __init__(self, destination, complete: str):
        self.final = Path(destination)
        parent = self.final.absolute().parent
        self.complete = complete
        self.work = parent / f".{self.final.name}.edgekit-staging"  # the new folder is work/new
        self.staging = self.work / "new"
        self.old = parent / f".{self.final.name}.edgekit-old"

    def begin(self) -> Path:
        """A fresh, empty staging folder to generate into."""
        if self.final.exists() and not self.final.is_dir():
            raise EdgekitError(f"output {self.final} exists and is not a folder; expected a folder path")
        shutil.rmtree(self.work, ignore_errors=True)
        self.staging.mkdir(parents=True)
        (self.staging / self.MARKER).write_bytes(b"")
        return self.staging

    def move_into_place(self) -> Path:
        """Set the old folder aside and move the staged one to the final path."""
        with signals_deferred():
            if self.final.exists():
                os.replace(self.final, self.old)
            os.replace(self.staging, self.final)
            shutil.rmtree(self.work, ignore_errors=True)
        return self.final

    def commit(self) -> None:
        """The new folder is complete (its `complete` file written): drop the marker and the old folder."""
        if not (self.final / self.complete).is_file():
            raise RuntimeError(f"commit before {self.complete} was written")
        with signals_deferred():
            (self.final / self.MARKER).unlink(missing_ok=True)
        shutil.rmtree(self.old, ignore_errors=True)

    def recover(self) -> None:
        """Undo an unfinished replacement (this run's or a killed run's): the old folder is back, nothing else.

        Folders are renamed into the staging area before they are deleted, so that a run killed while deleting
        never leaves a half-deleted folder that looks like something else."""
        with signals_deferred():
            shutil.rmtree(self.work, ignore_errors=True)
            if (self.final / self.MARKER).exists():
                if (self.final / self.complete).is_file():  # finished, killed before the marker went
                    (self.final / self.MARKER).unlink()
                else:
                    self.work.mkdir(parents=True, exist_ok=True)
                    os.replace(self.final, self.work / "unfinished")
            if self.old.exists():
                if self.final.exists():
                    self.work.mkdir(parents=True, exist_ok=True)
                    os.replace(self.old, self.work / "replaced")
                else:
                    os.replace(self.old, self.final)
            shutil.rmtree(self.work, ignore_errors=True)


@contextmanager
def replacing_output_dir(destination, complete: str):
    """Undo what a killed run left and yield a FolderSwap; on any error or interrupt in the block the swap is
    undone (the previous folder survives, intact). The caller holds `output_lock(destination)`."""
    swap = FolderSwap(destination, complete)
    swap.recover()
    try:
        yield swap
    except BaseException:
        swap.recover()
        raise
    swap.recover()  # a block that returned before commit() leaves nothing half-done either


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
