"""The server's side of one authenticated connection: its model, render slot, outgoing queues, jobs,
uploads and downloads.

Everything here runs on the event loop except FileStream.next_message (a worker thread reads the file).
A peer's sender writes its queued control messages first, then its newest frame, then download chunks,
so a download never holds up the view and a slow reader only waits for itself.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from remote import protocol as P
from remote.jobs import Job
from remote.models import Model

log = logging.getLogger(__name__)
MAX_OUTBOX = 256
"""Unsent control messages per peer; a peer that lets more pile up is not reading and is closed."""
MAX_JOBS = 4
"""Unfinished jobs per peer, and downloads at once."""
MAX_UPLOAD = {"checkpoint": 2 * 2**30, "image": 64 * 2**20}
MAX_KEPT_UPLOADS = 4
"""Uploaded images a peer keeps for its jobs (the oldest goes first)."""
CHECKPOINT_SUFFIXES = (".pkl", ".ckpt", ".pt")


@dataclass
class Upload:
    """A file arriving in chunks, written to the server's private upload folder."""
    id: str
    kind: str
    """checkpoint | image"""
    name: str
    size: int
    path: Path
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    async def write(self, header: dict, parts: list[memoryview]) -> None:
        """Append one upload_chunk (ProtocolError when it is out of order or beyond the announced size)."""
        if header.get("id") != self.id or header.get("offset") != self.received or len(parts) != 1:
            raise P.ProtocolError("upload chunk out of order")
        data = bytes(parts[0])
        if self.received + len(data) > self.size:
            raise P.ProtocolError("upload larger than announced")
        await asyncio.to_thread(_append, self.path, data)
        self.digest.update(data)
        self.received += len(data)


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


class Peer:
    """One authenticated connection: its model, render slot, outgoing queues, jobs and files."""

    def __init__(self, cid: int, ws: ServerConnection, peer: str, model: Model):
        self.id, self.ws, self.peer, self.model = cid, ws, peer, model
        self.closed = False
        self.outbox: deque[str | bytes] = deque()
        self.progress: dict[str, str] = {}
        """Newest unsent progress message per job (older ones are superseded)."""
        self.frame: bytes | None = None
        self.downloads: deque[FileStream] = deque()
        self.wake = asyncio.Event()
        self.jobs: dict[str, Job] = {}
        self.upload: Upload | None = None
        self.uploads: dict[str, Path] = {}
        self.results: dict[str, Any] = {}
        self.loading = False
        self._numbers = itertools.count()

    def post(self, msg: dict | bytes, progress_of: str | None = None) -> None:
        """Queue a message (event loop only). Too many unsent ones close the connection."""
        if self.closed:
            return
        data = msg if isinstance(msg, bytes) else P.encode_text(msg)
        if progress_of is not None:
            self.progress[progress_of] = data
        else:
            if len(self.outbox) >= MAX_OUTBOX:
                log.warning("closed client %d (%s): not reading its messages", self.id, self.peer)
                self.closed = True
                asyncio.ensure_future(self.ws.close(1008, "not reading"))
                return
            self.outbox.append(data)
        self.wake.set()

    def post_frame(self, data: bytes) -> None:
        if self.closed:
            return
        self.frame = data
        self.wake.set()

    # ---- files ------------------------------------------------------------------------------------
    def begin_upload(self, m: dict, folder: Path) -> None:
        """upload_begin: a new file in the server's private `folder`, then upload_ready."""
        P.fields_of(m, {"type", "id", "kind", "name", "size"}, "upload_begin")
        uid, kind = P.text(m.get("id"), "id", 64), P.choice(m.get("kind"), tuple(MAX_UPLOAD), "kind")
        name = Path(P.text(m.get("name", "upload"), "name", 128)).name
        size = P.integer(m.get("size"), 1, MAX_UPLOAD[kind], "size")
        if self.upload is not None or self.loading:
            raise P.FieldError("one upload at a time per connection")
        suffix = Path(name).suffix.lower()
        if kind == "checkpoint" and suffix not in CHECKPOINT_SUFFIXES:
            raise P.FieldError(f"a checkpoint must end in {', '.join(CHECKPOINT_SUFFIXES)}")
        path = folder / f"{self.id}-{next(self._numbers)}{suffix}"
        path.touch(mode=0o600, exist_ok=False)
        self.upload = Upload(uid, kind, name, size, path)
        self.post({"type": "upload_ready", "id": uid})

    def end_upload(self, m: dict) -> Upload | None:
        """upload_end: an image is kept for jobs (answered `uploaded`); a checkpoint is returned to load."""
        P.fields_of(m, {"type", "id"}, "upload_end")
        up = self.upload
        if up is None or m.get("id") != up.id:
            raise P.ProtocolError("upload_end without upload_begin")
        self.upload = None
        if up.received != up.size:
            up.path.unlink(missing_ok=True)
            raise P.FieldError(f"upload {up.name}: {up.received} of {up.size} bytes arrived")
        if up.kind == "checkpoint":
            return up
        self.uploads[up.id] = up.path
        while len(self.uploads) > MAX_KEPT_UPLOADS:
            self.uploads.pop(next(iter(self.uploads))).unlink(missing_ok=True)
        self.post({"type": "uploaded", "id": up.id, "bytes": up.received})
        return None

    def start_download(self, stream_id: str, path: Path) -> None:
        if len(self.downloads) >= MAX_JOBS or any(d.id == stream_id for d in self.downloads):
            raise P.FieldError("too many downloads at once, or the id is in use")
        self.downloads.append(FileStream(stream_id, path))
        self.wake.set()

    def cancel(self, task_id: str) -> None:
        """Cancel a job or a download by id."""
        if task_id in self.jobs:
            self.jobs[task_id].cancel()
        for download in [d for d in self.downloads if d.id == task_id]:
            self.downloads.remove(download)
            download.close()
            self.post({"type": "download_cancelled", "id": task_id})

    def drop_all(self) -> None:
        """The peer left: cancel its jobs, close its downloads, remove its uploaded files."""
        self.closed = True
        self.wake.set()
        for job in self.jobs.values():
            job.cancel()
        for download in self.downloads:
            download.close()
        self.downloads.clear()
        for path in list(self.uploads.values()) + ([self.upload.path] if self.upload else []):
            path.unlink(missing_ok=True)
        self.uploads.clear()
        self.upload = None

    async def send_loop(self) -> None:
        """Write queued messages, then the newest frame, then download chunks, until the connection ends."""
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while not self.closed:
                if self.outbox:
                    data = self.outbox.popleft()
                elif self.progress:
                    data = self.progress.pop(next(iter(self.progress)))
                elif self.frame is not None:
                    data, self.frame = self.frame, None
                elif self.downloads:
                    download = self.downloads[0]
                    data = await asyncio.to_thread(download.next_message)
                    if download.finished and download in self.downloads:
                        self.downloads.remove(download)
                    if data is None:
                        continue
                else:
                    break
                await self.ws.send(data)


class FileStream:
    """One file streamed to a client in CHUNK-sized binary messages; the last carries the sha256 of all
    bytes sent. The sender reads chunks on a worker thread; cancel may come from the event loop."""

    def __init__(self, job_id: str, path: Path):
        self.id, self.path = job_id, path
        self._file = open(path, "rb")  # noqa: SIM115 - closed by finish()
        self.size = os.fstat(self._file.fileno()).st_size
        self.offset, self.finished = 0, False
        self._digest = hashlib.sha256()
        self._lock = threading.Lock()

    def next_message(self) -> bytes | None:
        with self._lock:
            if self.finished:
                return None
            data = self._file.read(P.CHUNK)
            self._digest.update(data)
            header = {"type": "file", "id": self.id, "offset": self.offset, "size": self.size}
            self.offset += len(data)
            if self.offset >= self.size or not data:
                header.update(sha256=self._digest.hexdigest(), size=self.offset)
                self._finish()
            return P.pack(header, [data])

    def close(self) -> None:
        with self._lock:
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._file.close()
