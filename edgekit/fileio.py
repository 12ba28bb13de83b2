"""Reading inputs with a size cap, and writing outputs atomically, with one-line errors for every OSError.

Inputs: a model, data or recipe file must be a regular file no bigger than its cap (a FIFO would hang, /dev/zero
would eat memory, a folder is a mistake); that is checked on the open file descriptor before anything is read.
Outputs are written to a temporary place and moved into position only when complete: a command that fails
half-way (bad input, full disk, Ctrl-C) leaves no half-written file or folder behind, and the files and folders
it does write get the permissions the umask asks for, like any other program's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import EdgekitError

MiB = 1 << 20
GiB = 1 << 30
# Caps on what edgekit reads (docs/robustness.md). Generous: the largest model a microcontroller runs is a few
# MiB, the largest calibration set a few hundred MiB; they exist so that a wrong path fails at once.
MAX_MODEL_BYTES = 512 * MiB  # .tflite, .keras, .h5 files
MAX_DATA_BYTES = 4 * GiB  # .npz/.npy files, each image or WAV file, and the arrays an .npz holds (uncompressed)
MAX_TEXT_BYTES = 16 * MiB  # recipes (edgekit.toml), build manifests


def size_text(n: int) -> str:
    """A byte count as people write caps: 512 MiB, 4 GiB, 1.5 KiB."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def io_error(path, error: OSError, doing: str = "read", *, exact: bool = False) -> EdgekitError:
    """One line for an OSError: the path, and what the errno means (os.strerror), never a traceback.

    exact: name `path` even when the error names another file (a temporary neighbour of the output).
    """
    where = error.filename if getattr(error, "filename", None) and not exact else path
    reason = os.strerror(error.errno) if error.errno else (error.strerror or str(error) or type(error).__name__)
    return EdgekitError(f"cannot {doing} {where}: {reason}", kind="io")


def check_input_file(path, what: str, max_bytes: int) -> int:
    """The size of `path` when it is a regular file within the cap; a one-line EdgekitError otherwise.

    For readers that open the file themselves (numpy, Keras, PIL): the file is opened non-blocking and checked
    with fstat, so a FIFO is refused at once instead of hanging.
    """
    fd = _open_checked(Path(path), what, max_bytes)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_input_file(path, what: str, max_bytes: int) -> bytes:
    """The bytes of `path` when it is a regular file of at most `max_bytes`; a one-line EdgekitError otherwise.

    `what` names the file in the error ("model file", "data file", "recipe").
    """
    path = Path(path)
    fd = _open_checked(path, what, max_bytes)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)  # a file that grew since fstat is still bounded
    except OSError as error:
        raise io_error(path, error) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise _too_big(path, what, len(data), max_bytes)
    return data


def _open_checked(path: Path, what: str, max_bytes: int) -> int:
    """An fd open for reading on a regular file within the cap (O_NONBLOCK: opening a FIFO must not wait)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise EdgekitError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise EdgekitError(f"{what} {path} is a folder; expected a regular file of at most {size_text(max_bytes)}") \
            from None
    except OSError as error:
        raise io_error(path, error) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise EdgekitError(f"{what} {path} is {_kind(info.st_mode)}; expected a regular file of at most "
                               f"{size_text(max_bytes)}")
        if info.st_size > max_bytes:
            raise _too_big(path, what, info.st_size, max_bytes)
        if hasattr(os, "O_NONBLOCK"):
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _too_big(path, what, size, max_bytes) -> EdgekitError:
    return EdgekitError(f"{what} {path} is {size_text(size)}; expected at most {size_text(max_bytes)} "
                        "(edgekit's cap on this kind of file)")


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows; os.umask round trip otherwise)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path, *, folder: bool = False) -> None:
    """Give a file made by mkstemp (0600) or a folder made by mkdtemp (0700) the permissions of open()/mkdir()."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


@contextmanager
def writing(path, doing: str = "write"):
    """Turn an OSError raised while writing `path` into one line naming the path and the errno's meaning."""
    try:
        yield
    except OSError as error:
        raise io_error(path, error, doing, exact=True) from None


def check_output_file(path, inputs=()) -> Path:
    """Fail before any work when a file could not be written at `path` (a folder there, a file as its parent), or
    when it is one of the command's `inputs` (the model or data it reads would be replaced by its result)."""
    path = Path(path)
    for given in inputs:
        if given is not None and path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise EdgekitError(f"output {path} is the input {given}; expected another file path (writing there "
                               "would replace it)", exit_code=2, kind="usage")
    if path.is_dir():
        raise EdgekitError(f"cannot write {path}: it is a folder; expected a file path", kind="io")
    if path.exists() and not path.is_file():  # a rename would replace the device or FIFO itself
        raise EdgekitError(f"cannot write {path}: it is {_kind(path.stat().st_mode)}; expected a regular file path",
                           kind="io")
    for ancestor in path.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise EdgekitError(f"cannot write {path}: {ancestor} is a file, not a folder", kind="io")
            break
    return path


def _check_parent(path: Path) -> Path:
    """The parent folder of an output path, created if needed; one line when it cannot be."""
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise EdgekitError(f"cannot write {path}: {ancestor} is a file, not a folder", kind="io")
            break
    with writing(parent, "create the folder"):
        parent.mkdir(parents=True, exist_ok=True)
    return parent


@contextmanager
def atomic_output_dir(destination, *, overwrite: bool = True):
    """Yield a temporary folder beside `destination`; on success it replaces `destination`, on error it vanishes.

    So a failed generation never leaves a half-written project behind. An OSError while filling the folder
    (full disk, read-only file system) becomes one line naming the file.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise EdgekitError(f"output {destination} exists and is not a folder; expected a folder path")
    if destination.exists() and not overwrite:
        raise EdgekitError(f"output folder {destination} already exists")
    parent = _check_parent(destination.absolute())
    with writing(destination, "create the folder"):
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=parent))
    _staging_names[str(staging)] = str(destination)
    try:
        apply_umask(staging, folder=True)
        try:
            yield staging
        except OSError as error:
            raise _output_io_error(error, staging, destination) from None
        with writing(destination), signals_deferred():  # an interrupt between the renames would lose both folders
            if destination.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old.", dir=parent))
                os.replace(destination, trash / "old")
                os.replace(staging, destination)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _staging_names.pop(str(staging), None)


_staging_names: dict[str, str] = {}  # staging folder -> the output it becomes (nested stagings included)


def _output_io_error(error: OSError, staging: Path, destination: Path) -> EdgekitError:
    """The one line for an OSError while filling `staging`: the file named as it will be called once in place."""
    names = [str(n) for n in (error.filename2, error.filename) if n and str(staging) in str(n)]
    where = _final_name(names[0]) if names else _final_name(str(destination))
    return io_error(where, error, "write", exact=True)


def _final_name(name: str) -> str:
    """A path inside (possibly nested) staging folders, as it will be called once they are moved into place."""
    for _ in range(len(_staging_names)):
        for staging, destination in _staging_names.items():
            if name == staging or name.startswith(staging + os.sep):
                name = destination + name[len(staging):]
                break
        else:
            break
    return name


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
    with writing(destination, "create the folder"):
        parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".{destination.name}.lock"
    while True:
        with writing(destination, "lock"):  # name the output, not the lock file beside it
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
        try:
            os.fsencode(self.final.absolute()).decode("utf-8")
        except UnicodeDecodeError:  # compilers and build systems write the path into their files as text
            raise EdgekitError(f"output folder {os.fsdecode(self.final)!r} is not a UTF-8 path; expected a folder "
                               "name the build tools can write into their files") from None
        if self.final.is_dir() and any(self.final.iterdir()) and not (self.final / self.complete).exists():
            # replacing it would delete whatever the user keeps there: only an earlier build is replaced
            raise EdgekitError(f"output {self.final} is a folder that edgekit did not build (no {self.complete}); "
                               "expected a new folder or the folder of an earlier build")
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
    with writing(destination, "replace the folder"):
        swap.recover()
    _staging_names[str(swap.staging)] = str(destination)
    try:
        yield swap
    except OSError as error:  # name the file as it will be called, not its staging name
        swap.recover()
        raise _output_io_error(error, swap.staging, Path(destination)) from None
    except BaseException:
        swap.recover()
        raise
    finally:
        _staging_names.pop(str(swap.staging), None)
    swap.recover()  # a block that returned before commit() leaves nothing half-done either


def atomic_write_bytes(path, data: bytes) -> None:
    """Write a file through a temporary neighbour and a rename: never a half-written output.

    The file gets 0666 minus the umask (as open() would give), not mkstemp's 0600.
    """
    path = check_output_file(path)
    parent = _check_parent(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with writing(path):
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            apply_umask(tmp)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
