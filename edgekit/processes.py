"""Child processes tied to edgekit's life: a compiler, an emulator or a host program never outlives the command.

Every child starts in a session (and process group) of its own, so that it and whatever it starts (make -> cc ->
cc1) can be stopped together with one killpg, and on Linux with PR_SET_PDEATHSIG, so that the kernel kills it
when edgekit dies without a chance to clean up (SIGKILL). On an interrupt (Ctrl-C, SIGTERM: see edgekit.cli) the
KeyboardInterrupt passes through `run_tied`, which kills the group before re-raising; processes started with
`popen_tied` are stopped by their owner (`stop_tied`), and, as a last resort, at interpreter exit.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile

_LIVE: set = set()  # processes started by popen_tied and not stopped yet


def _preexec():
    """The preexec_fn: die with edgekit (libc is loaded here, before the fork: no dlopen in the child)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def tie():
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # edgekit died before the prctl: nobody will send the signal
            os._exit(1)

    return tie


def popen_tied(command, **kwargs) -> subprocess.Popen:
    """subprocess.Popen in a new session that dies with edgekit; stop it with `stop_tied`."""
    if "preexec_fn" in kwargs or "start_new_session" in kwargs:
        raise TypeError("popen_tied sets preexec_fn and start_new_session itself")
    process = subprocess.Popen(command, preexec_fn=_preexec(), start_new_session=True, **kwargs)
    _LIVE.add(process)
    return process


def _kill_group(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)  # its session leader's pid is the group id
    except (ProcessLookupError, PermissionError):
        pass


def kill_tied(process: subprocess.Popen) -> None:
    """Kill the process and everything in its group at once, and reap it."""
    _kill_group(process)
    process.wait()
    _LIVE.discard(process)


def stop_tied(process: subprocess.Popen, grace: float = 2.0) -> None:
    """SIGTERM to the group, SIGKILL after `grace` seconds; its pipes are closed."""
    if process.poll() is None:
        _kill_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    kill_tied(process)  # also whatever the group still holds (grandchildren)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream:
            try:
                stream.close()
            except OSError:
                pass


def run_tied(command, *, input=None, capture_output: bool = False, timeout: float | None = None,
             scratch_in: str | os.PathLike | None = None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with the child tied to edgekit: on a timeout or an interrupt its whole group is killed
    before the exception goes on (subprocess.TimeoutExpired, KeyboardInterrupt).

    `scratch_in`: a folder (a build's own) under which the child gets a private TMPDIR, removed when it ends. A
    compiler killed with its group cannot delete its temporary files (cc*.s, cc*.o): they then go with that
    folder, never into the system's TMPDIR.
    """
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    scratch = None
    if scratch_in is not None:
        scratch = tempfile.mkdtemp(prefix=".edgekit-tmp-", dir=scratch_in)
        kwargs["env"] = {**(kwargs.get("env") or os.environ), "TMPDIR": scratch}
    try:
        process = popen_tied(command, **kwargs)
        try:
            with process:
                try:
                    stdout, stderr = process.communicate(input, timeout=timeout)
                except BaseException:
                    kill_tied(process)
                    raise
            _kill_group(process)  # a grandchild left behind by a child that exited
        finally:
            _LIVE.discard(process)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_LIVE):
        if process.poll() is None:
            _kill_group(process)
            try:
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    _LIVE.clear()
