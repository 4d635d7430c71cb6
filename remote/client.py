"""RemoteEngine: the studio's render path against `main.py serve` on another machine.

It offers what the session uses of core.worker.RenderWorker (`submit` never blocks, `latest()`, `busy`,
`wait_idle`, `close`) with the same RenderRequest and Frame values, so a session can hold either; plus a
blocking `render`, the model (open a server path or upload a file), jobs named by action type with
progress, cancel and result, downloads with progress, and a served run's curves and grids.

The connection is a remote.link.Link (its thread reads every message, pings for the round trip time and
reconnects). After a reconnect the client opens the model it had opened again (re-uploading an uploaded
one) and then re-sends the newest request whose frame had not come; jobs and downloads in flight when the
connection dropped end with an error.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np

from core.engine import Frame, RenderRequest
from core.progress import Progress, report
from core.worker import FrameSource
from remote import protocol as P
from remote.frames import decode_frame, decode_rgb
from remote.link import PING_S, Link, RemoteError
from remote.tasks import Download, RemoteJob, job_arrays

log = logging.getLogger(__name__)
STATS_WINDOW = 30
"""Frames the bytes-per-frame average covers."""
__all__ = ["RemoteEngine", "RemoteError", "RemoteJob", "read_token"]


class RemoteEngine(FrameSource):
    def __init__(self, url: str, token: str, *, encoding: str = "png", reconnect: bool = True,
                 connect_timeout: float = 30.0, name: str = "triplane-studio", ping_s: float = PING_S):
        """Connect to `url` (ws://HOST:PORT) with `token`; blocks until the server welcomed us
        (RemoteError when it cannot be reached or refuses the token)."""
        self.url, self.encoding = url, encoding
        self.model: dict | None = None
        """The server's description of the model this client renders (the "model" message)."""
        self.model_serial = 0
        """Grows with every model message (opened, reloaded) so a poller sees changes."""
        self.run: dict | None = None
        """The served run's summary (snapshot, metric count, grids), when the server serves a run."""
        self.welcome: dict = {}
        self._cv = threading.Condition()
        self._gen = itertools.count(1)
        self._seq = itertools.count(1)
        self._sent: dict[int, tuple[RenderRequest, float, str, int]] = {}
        """wire generation -> (request, time sent, encoding, submission) of requests whose frame has not come."""
        self._unsent: tuple[RenderRequest, str, int] | None = None
        self.latest_submission = 0
        """Submission number of the newest frame received."""
        self._latest: Frame | None = None
        self._waiters: dict[str, deque[Future]] = {}
        self._jobs: dict[str, RemoteJob] = {}
        self._downloads: dict[str, Download] = {}
        self._ids = itertools.count(1)
        self._opened: tuple[str, Any] | None = None
        """('path', server path) or ('upload', local file) the client opened, to open again after a reconnect."""
        self._reopening = False
        self.frame_bytes: deque[int] = deque(maxlen=STATS_WINDOW)
        self.frame_ms: float | None = None
        """Round trip of the last frame: request sent to frame received (render and network)."""
        self.frames = 0
        self.link = Link(url, token, name=name, reconnect=reconnect, ping_s=ping_s, on_attached=self._attached,
                         on_message=self._on_message, on_detached=self._detached)
        if not self.link.wait_attached(connect_timeout):
            self.link.close()
            raise RemoteError(f"cannot attach to {url}: {self.link.last_error or 'no answer'}")

    @property
    def status(self) -> str:
        """connected | disconnected, reconnecting | refused | closed"""
        return self.link.status

    @property
    def reconnects(self) -> int:
        return self.link.reconnects

    # ---- the render path (RenderWorker's interface) ---------------------------------------------------
    def submit(self, request: RenderRequest, encoding: str | None = None) -> int:
        """Send a request (never blocks); the server renders only the newest one it has not started.
        -> the submission's number (frames of it and later submissions set `latest_submission`)."""
        with self._cv:
            seq = next(self._seq)
            self._unsent = (request, encoding or self.encoding, seq)
        self._flush_request()
        return seq

    def _flush_request(self) -> None:
        with self._cv:
            if self._unsent is None or self.link.status != "connected" or self._reopening:
                return
            (request, encoding, seq), self._unsent = self._unsent, None
            wire = next(self._gen)
            self._sent[wire] = (request, time.monotonic(), encoding, seq)
        msg = {"type": "render", "encoding": encoding,
               "request": P.to_json(request) | {"generation": wire}}
        if not self.link.send_quiet(msg):
            with self._cv:
                self._sent.pop(wire, None)
                self._unsent = self._unsent or (request, encoding, seq)

    def _idle(self) -> bool:
        return not self._sent and self._unsent is None

    def render(self, request: RenderRequest, encoding: str | None = None, timeout: float = 120.0) -> Frame:
        """Render one request and wait for its frame (scripts, tests, benchmarks)."""
        seq = self.submit(request, encoding)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if self.latest_submission >= seq:
                    return self._latest
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RemoteError(f"no frame from {self.url} within {timeout:g} s ({self.status})")
                self._cv.wait(left)

    def stats(self) -> dict[str, Any]:
        """Round trip time (ping), the last frame's round trip, bytes per frame (last, mean of the window)."""
        sizes = list(self.frame_bytes)
        return {"status": self.status, "rtt_ms": self.link.rtt_ms, "frame_ms": self.frame_ms,
                "frame_bytes": sizes[-1] if sizes else None,
                "mean_frame_bytes": sum(sizes) / len(sizes) if sizes else None,
                "frames": self.frames, "reconnects": self.link.reconnects}

    # ---- model, files, jobs ---------------------------------------------------------------------------
    def open(self, path: str | None, timeout: float = 300.0) -> dict:
        """Render a checkpoint below the server's served folder (None: the server's own) -> model info."""
        model = self._request({"type": "open", "path": path}, "open", timeout)
        self._opened = None if path is None else ("path", path)
        return model

    def open_upload(self, path: str | os.PathLike, progress: Progress | None = None, timeout: float = 600.0) -> dict:
        """Upload a local checkpoint (the server loads it with the same safe loader) and render it."""
        model = self._upload(Path(path), "checkpoint", progress, timeout)
        self._opened = ("upload", Path(path))
        return model

    def upload_image(self, path: str | os.PathLike, progress: Progress | None = None, timeout: float = 300.0) -> str:
        """Upload an image for a job (StartInversion's `image`) -> its upload id."""
        return self._upload(Path(path), "image", progress, timeout)["id"]

    def job(self, kind: str, fields: dict | None = None) -> RemoteJob:
        """Start a job named by the studio's action type (remote.jobs.HANDLERS) with JSON fields."""
        job_id = f"job{next(self._ids)}"
        job = RemoteJob(job_id, kind, lambda: self.link.send_quiet({"type": "cancel", "id": job_id}))
        self._jobs[job_id] = job
        if not self.link.send_quiet({"type": "job", "id": job_id, "kind": kind, "fields": fields or {}}):
            self._jobs.pop(job_id, None)
            job.finish(error=f"not connected ({self.status})")
        return job

    def download(self, path: str, dest: str | os.PathLike, progress: Progress | None = None,
                 timeout: float = 3600.0) -> Path:
        """Fetch a file from the server's exports/ folder to `dest` (written atomically, sha256 checked)."""
        dest = Path(dest)
        job_id = f"dl{next(self._ids)}"
        download = Download(job_id, dest, progress)
        self._downloads[job_id] = download
        if not self.link.send_quiet({"type": "download", "id": job_id, "path": path}):
            self._downloads.pop(job_id, None)
            download.fail(f"not connected ({self.status})")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return download.future.result(timeout=0.1)
            except FutureTimeout:
                if progress is not None and progress.cancelled():
                    self.link.send_quiet({"type": "cancel", "id": job_id})
                if time.monotonic() > deadline:
                    self.link.send_quiet({"type": "cancel", "id": job_id})
                    raise RemoteError(f"download of {path} took longer than {timeout:g} s") from None

    def files(self, what: str = "models") -> list[str]:
        """Checkpoints below the served folder ('models') or files in its exports/ ('exports')."""
        return self._request({"type": "files", "what": what}, "files")["files"]

    def run_metrics(self, since: int = 0) -> dict:
        """The served run's summary and its metric entries from index `since` (at most 500)."""
        return self._request({"type": "run", "since": since}, "run")

    def run_grid(self, kind: str = "image") -> tuple[str, np.ndarray]:
        """(file name, uint8 [H,W,3]) of the served run's newest grid of `kind`."""
        import io

        from PIL import Image
        header, data = self._request({"type": "run", "grid": kind}, "run")
        with Image.open(io.BytesIO(bytes(data))) as im:
            return header["name"], np.asarray(im.convert("RGB"))

    def server_stats(self) -> dict:
        return self._request({"type": "stats"}, "stats")

    def close(self) -> None:
        self.link.close()

    # ---- requests and uploads ------------------------------------------------------------------------
    def _request(self, msg: dict, about: str, timeout: float = 60.0) -> Any:
        future: Future = Future()
        with self._cv:
            self._waiters.setdefault(about, deque()).append(future)
        if not self.link.send_quiet(msg):
            with self._cv:
                if future in self._waiters.get(about, ()):
                    self._waiters[about].remove(future)
            raise RemoteError(f"not connected to {self.url} ({self.status})")
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise RemoteError(f"{about}: no answer from {self.url} within {timeout:g} s") from None

    def _upload(self, path: Path, kind: str, progress: Progress | None, timeout: float) -> Any:
        size = path.stat().st_size
        upload_id = f"up{next(self._ids)}"
        self._request({"type": "upload_begin", "id": upload_id, "kind": kind, "name": path.name, "size": size},
                      "upload_begin")
        with open(path, "rb") as f:
            offset = 0
            while offset < size:
                data = f.read(P.CHUNK)
                if not data:
                    raise RemoteError(f"{path} shrank while it was uploaded")
                self.link.send(P.pack({"type": "upload_chunk", "id": upload_id, "offset": offset}, [data]))
                offset += len(data)
                report(progress, offset, size, f"uploading {path.name}")
        return self._request({"type": "upload_end", "id": upload_id}, "upload_end", timeout)

    # ---- the connection's events (on its thread) ------------------------------------------------------
    def _attached(self, welcome: dict, first: bool) -> None:
        self.welcome = welcome
        self._set_model(welcome.get("model"))
        if not first and self._opened is not None:  # the model this client had open, before any frame
            self._reopening = True
            threading.Thread(target=self._reopen, args=(self._opened,), daemon=True).start()
        self._flush_request()

    def _reopen(self, opened: tuple[str, Any]) -> None:
        try:
            if opened[0] == "path":
                self._request({"type": "open", "path": opened[1]}, "open", 300)
            else:
                self._upload(opened[1], "checkpoint", None, 600)
        except (RemoteError, OSError) as e:
            self.link.last_error = f"cannot open the model again after reconnecting: {e}"
            log.warning("%s", self.link.last_error)
        finally:
            self._reopening = False
            self._flush_request()

    def _detached(self) -> None:
        """The connection ended: fail what waited on it, keep the newest unanswered request to re-send."""
        with self._cv:
            if self._sent and self._unsent is None:
                request, _, encoding, seq = self._sent[max(self._sent)]
                self._unsent = (request, encoding, seq)
            self._sent.clear()
            waiters = [f for q in self._waiters.values() for f in q]
            self._waiters.clear()
            self._cv.notify_all()
        for future in waiters:
            if not future.done():
                future.set_exception(RemoteError(f"connection to {self.url} lost"))
        jobs, self._jobs = self._jobs, {}
        for job in jobs.values():
            job.finish(error="the connection to the server was lost")
        downloads, self._downloads = self._downloads, {}
        for download in downloads.values():
            download.fail("the connection to the server was lost")

    # ---- messages -----------------------------------------------------------------------------------
    def _resolve(self, about: str, value: Any = None, error: str | None = None) -> None:
        with self._cv:
            queue = self._waiters.get(about)
            future = queue.popleft() if queue else None
        if future is not None and not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(RemoteError(error))

    def _set_model(self, model: Any) -> None:
        if isinstance(model, dict):
            self.model, self.model_serial = model, self.model_serial + 1

    def _on_message(self, message: dict | bytes) -> None:
        if isinstance(message, bytes):
            self._on_binary(*P.unpack(message), size=len(message))
        else:
            self._on_text(message)

    def _on_text(self, m: dict) -> None:
        kind = m["type"]
        if kind == "model":
            self._set_model(m.get("model"))
            if m.get("reason") == "opened":
                self._resolve("open" if self._waiters.get("open") else "upload_end", m.get("model"))
        elif kind in ("files", "run", "stats"):
            self._resolve(kind, m)
        elif kind == "run_changed":
            self.run = {k: v for k, v in m.items() if k != "type"}
        elif kind == "upload_ready":
            self._resolve("upload_begin", m)
        elif kind == "uploaded":
            self._resolve("upload_end", m)
        elif kind == "error":
            self._on_error(m)
        elif kind in ("job_progress", "job_done", "job_error", "job_cancelled"):
            self._on_job(m, {})
        elif kind == "download_cancelled":
            download = self._downloads.pop(str(m.get("id")), None)
            if download is not None:
                download.fail("download cancelled", cancelled=True)
        elif kind != "welcome":
            raise P.ProtocolError(f"unknown message type {kind[:40]!r}")

    def _on_error(self, m: dict) -> None:
        about, message = m.get("about"), str(m.get("message", "error"))
        if about == "job" and m.get("id") in self._jobs:
            self._jobs.pop(m["id"]).finish(error=message)
        elif about == "download" and m.get("id") in self._downloads:
            self._downloads.pop(m["id"]).fail(message)
        elif about in ("open", "upload_begin", "upload_end", "files", "run", "stats"):
            self._resolve(about, error=message)
        else:
            log.warning("server: %s", message)

    def _on_job(self, m: dict, arrays: dict[str, np.ndarray]) -> None:
        job = self._jobs.get(str(m.get("id")))
        if job is None:
            return
        kind = m["type"]
        if kind == "job_progress":
            p = job.progress
            p.done, p.total, p.message = int(m.get("done", 0)), int(m.get("total", 0)), str(m.get("message", ""))
            return
        self._jobs.pop(job.id, None)
        if kind == "job_done":
            job.arrays = arrays
            job.finish(result=m.get("result") if isinstance(m.get("result"), dict) else {})
        elif kind == "job_cancelled":
            job.finish(cancelled=True)
        else:
            job.finish(error=str(m.get("message", "failed")))

    def _on_binary(self, header: dict, parts: list[memoryview], size: int) -> None:
        kind = header["type"]
        if kind == "frame":
            self._on_frame(header, parts, size)
        elif kind == "file":
            download = self._downloads.get(str(header.get("id")))
            if download is not None and len(parts) == 1 and download.chunk(header, parts[0]):
                self._downloads.pop(download.id, None)
        elif kind == "job_done":
            self._on_job(header, job_arrays(header, parts))
        elif kind == "job_preview":
            job = self._jobs.get(str(header.get("id")))
            if job is not None and len(parts) == 1:
                job.previews[str(header.get("name"))] = decode_rgb(parts[0], "png", tuple(header.get("shape", ())))
                job.preview_version += 1
        elif kind == "run_grid":
            self._resolve("run", (header, parts[0] if parts else b""))
        else:
            raise P.ProtocolError(f"unknown binary message {str(kind)[:40]!r}")

    def _on_frame(self, header: dict, parts: list[memoryview], size: int) -> None:
        wire = header.get("generation")
        with self._cv:
            sent = self._sent.pop(wire, None) if isinstance(wire, int) else None
            for older in [g for g in self._sent if g < (wire or 0)]:  # superseded: dropped on the server
                del self._sent[older]
        if sent is None:
            return
        request, t_sent, _, seq = sent
        frame = decode_frame(header, parts, request)
        roundtrip = time.monotonic() - t_sent
        server_s = header.get("server_s") if isinstance(header.get("server_s"), float) else 0.0
        frame.timings.update(roundtrip=roundtrip, network=max(0.0, roundtrip - server_s))
        with self._cv:
            self._latest, self.latest_submission = frame, seq
            self.frames += 1
            self.frame_bytes.append(size)
            self.frame_ms = roundtrip * 1000
            self._cv.notify_all()


def read_token(path: str | os.PathLike) -> str:
    """The client side of remote.auth: the token file copied from the server (its mode is not checked)."""
    from remote.auth import read_token_file
    return read_token_file(path, private=False)
