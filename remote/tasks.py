"""What a client waits for on the server: jobs (progress, live previews, a result) and file downloads."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from core.progress import Cancelled, Progress, Task
from remote import protocol as P
from remote.link import RemoteError


class JobProgress(Progress):
    """A remote job's progress as the studio polls it; cancel() also asks the server to stop the job."""

    def __init__(self, cancel_remote: Callable[[], object]):
        super().__init__()
        self._cancel_remote = cancel_remote

    def cancel(self) -> None:
        if not self.cancelled():
            super().cancel()
            self._cancel_remote()


class RemoteJob(Task):
    """One job on the server: progress and live previews, then a result (dict and arrays), an error or
    cancelled. Polled like app.jobs.Job."""

    def __init__(self, job_id: str, kind: str, cancel_remote: Callable[[], object]):
        super().__init__(JobProgress(cancel_remote))
        self.id, self.kind = job_id, kind
        self.arrays: dict[str, np.ndarray] = {}
        self.previews: dict[str, np.ndarray] = {}
        """Live images by name (an inversion's reconstruction), uint8 [H,W,3]."""
        self.preview_version = 0

    def finish(self, result: dict | None = None, error: str | None = None, cancelled: bool = False) -> None:
        self.result, self.error, self.cancelled = result, error, cancelled
        self._done.set()


class Download:
    """A file arriving in chunks, written beside `dest` and moved in place once its sha256 matches."""

    def __init__(self, job_id: str, dest: Path, progress: Progress | None):
        self.id, self.dest, self.progress = job_id, dest, progress
        self.tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed when the last chunk arrives or on failure
        self.digest = hashlib.sha256()
        self.future: Future = Future()

    def chunk(self, header: dict, data: memoryview) -> bool:
        """Write one chunk; True when it was the last."""
        if header.get("offset") != self.file.tell():
            raise P.ProtocolError("download chunk out of order")
        self.file.write(data)
        self.digest.update(data)
        if self.progress is not None:
            self.progress.done, self.progress.total = self.file.tell(), int(header.get("size", 0))
        if "sha256" not in header:
            return False
        self.file.close()
        if header["sha256"] != self.digest.hexdigest():
            self.fail("the downloaded bytes do not match the server's sha256")
        else:
            os.replace(self.tmp, self.dest)
            self.future.set_result(self.dest)
        return True

    def fail(self, message: str, cancelled: bool = False) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)
        if not self.future.done():
            self.future.set_exception(Cancelled(message) if cancelled else RemoteError(message))


def job_arrays(header: dict, parts: list[memoryview]) -> dict[str, np.ndarray]:
    """A job result's arrays (uint8 or float32 only, shapes checked against the bytes)."""
    out = {}
    specs = header.get("arrays", [])
    if not isinstance(specs, list) or len(specs) != len(parts):
        raise P.ProtocolError("job arrays do not match their parts")
    for spec, data in zip(specs, parts):
        dtype, shape = spec.get("dtype"), spec.get("shape")
        if dtype not in ("|u1", "<f4") or not isinstance(shape, list) or not all(
                isinstance(n, int) and 0 <= n <= 2**24 for n in shape):
            raise P.ProtocolError(f"bad array {str(spec)[:80]}")
        array = np.frombuffer(data, dtype)
        if array.size != int(np.prod(shape)):
            raise P.ProtocolError(f"array {spec.get('name')} does not hold {shape}")
        out[str(spec.get("name"))] = array.reshape(shape).copy()
    return out
