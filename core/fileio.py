"""Atomic file writes: a reader (or a crash) never sees a half-written output file.

The temporary file is hidden beside its target (`.NAME.PID-XXXX.tmp.EXT`) and removed on any exception,
KeyboardInterrupt included (the CLI turns SIGTERM into one, see cli/common.py). A hard kill can still
leave one behind; `remove_stale_temps` clears them on the next run.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def _file_mode() -> int:
    """0666 less the umask, read once at import: os.umask is process-wide, so reading it again later
    (set, then restore) would race with other threads creating files."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (and SIGALRM, which the CLI uses to repeat an interrupt) until the block ends,
    then deliver them to the handlers that were there.

    For the few steps that must not be cut in two: a temp file created but not yet owned by a cleanup, a
    child process started but not yet known to whoever would stop it (an ffmpeg orphaned that way writes
    its file after the cleanup). Only the main thread receives signals, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; on success it replaces `final` (os.replace), else it is removed.

    Keeps the file extension so that writers choosing a format by suffix (trimesh, imageio) still work.
    """
    final = Path(final)
    tmp = None
    try:
        with deferred_signals():  # an interrupt between mkstemp and the assignment would leave the file behind
            try:
                fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.{os.getpid()}-",
                                            suffix=f".tmp{final.suffix}")
            except OSError as e:  # name the file the user asked for, not the hidden temp
                raise OSError(e.errno, e.strerror, str(final)) from None
            tmp = Path(name)
            try:
                os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600; give the file normal permissions
            finally:
                os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:  # the data must be on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Remove the temporaries that atomic_path left in `directory` when a run was killed hard (SIGKILL).

    Temp names carry the writer's process id; only files of processes that no longer exist are removed,
    so a concurrent writer's live temp file is kept. Returns how many were removed.
    """
    removed = 0
    try:
        candidates = list(Path(directory).glob(".*.tmp*"))
    except OSError:
        return 0
    for p in candidates:
        m = _TEMP_NAME.match(p.name)
        if not m or int(m[1]) == os.getpid() or process_alive(int(m[1])):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


_TEMP_NAME = re.compile(r"^\..*\.(\d{1,10})-[A-Za-z0-9_]+\.tmp(\.[^.]*)?$")


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True
