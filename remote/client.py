"""RemoteEngine: the studio's render path against `main.py serve` on another machine.

It offers what the session uses of core.worker.RenderWorker (`submit` never blocks, `latest()`, `busy`,
`wait_idle`, `close`) with the same RenderRequest and Frame values, so a session can hold either; plus a
blocking `render`, the model (open a server path or upload a file), jobs named by action type with
progress, cancel and result, downloads with progress, and a served run's curves and grids.

One thread owns the connection: it connects, reads every message and pings every PING_S for the round
trip time. When the server goes away it reconnects (backing off up to 5 s), opens the model the client
had opened again (re-uploading an uploaded one) and re-sends the newest request whose frame had not come.
Jobs and downloads in flight when the connection dropped end with an error.
"""
from __future__ import annotations

import hashlib
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
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from core.engine import Frame, RenderRequest
from core.errors import StudioError
from core.progress import Cancelled, Progress
from remote import protocol as P
from remote.frames import decode_frame, decode_rgb

log = logging.getLogger(__name__)
PING_S = 5.0
RECONNECT_MAX_S = 5.0
STATS_WINDOW = 30
"""Frames the bytes-per-frame average covers."""


class RemoteError(StudioError):
    """The server refused something, or the connection is not there."""


class JobProgress(Progress):
    """A remote job's progress as the studio polls it; cancel() also asks the server to stop the job."""

    def __init__(self, cancel_remote):
        super().__init__()
        self._cancel_remote = cancel_remote

    def cancel(self) -> None:
        if not self.cancelled():
            super().cancel()
            self._cancel_remote()


class RemoteJob:
    """One job on the server: progress, live previews, then a result (dict and arrays), an error or
    cancelled."""

    def __init__(self, engine: RemoteEngine, job_id: str, kind: str):
        self.id, self.kind = job_id, kind
        self.progress = JobProgress(lambda: engine._send_quiet({"type": "cancel", "id": job_id}))
        self.result: dict | None = None
        self.arrays: dict[str, np.ndarray] = {}
        self.previews: dict[str, np.ndarray] = {}
        self.preview_version = 0
        self.error: str | None = None
        self.cancelled = False
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self.progress.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, result: dict | None = None, error: str | None = None, cancelled: bool = False) -> None:
        self.result, self.error, self.cancelled = result, error, cancelled
        self._done.set()


class _Download:
    def __init__(self, job_id: str, dest: Path, progress: Progress | None):
        self.id, self.dest, self.progress = job_id, dest, progress
        self.tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed when the last chunk arrives or on error
        self.digest = hashlib.sha256()
        self.future: Future = Future()

    def chunk(self, header: dict, data: memoryview) -> bool:
        """Write one chunk; True when it was the last (the file is then verified and moved in place)."""
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


class RemoteEngine:
    def __init__(self, url: str, token: str, *, encoding: str = "png", reconnect: bool = True,
                 connect_timeout: float = 30.0, name: str = "triplane-studio", ping_s: float = PING_S):
        """Connect to `url` (ws://HOST:PORT) with `token`; blocks until the server welcomed us
        (RemoteError when it cannot be reached or refuses the token)."""
        self.url, self._token, self.encoding, self.reconnect, self._name = url, token, encoding, reconnect, name
        self._ping_s = ping_s
        self.status = "connecting"
        """connected | disconnected, reconnecting | refused | closed"""
        self.last_error = ""
        self.model: dict | None = None
        """The server's description of the model this client renders (the "model" message)."""
        self.model_serial = 0
        """Grows with every model message (opened, reloaded) so a poller sees changes."""
        self.run: dict | None = None
        """The served run's summary (snapshot, metric count, grids), when the server serves a run."""
        self.welcome: dict = {}
        self._ws: ClientConnection | None = None
        self._send_lock = threading.Lock()
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
        self._downloads: dict[str, _Download] = {}
        self._ids = itertools.count(1)
        self._opened: tuple[str, Any] | None = None
        """('path', server path) or ('upload', local file) the client opened, to open again after a reconnect."""
        self._reopening = False
        self._last_ping = 0.0
        self.rtt_ms: float | None = None
        self.frame_bytes: deque[int] = deque(maxlen=STATS_WINDOW)
        self.frame_ms: float | None = None
        """Round trip of the last frame: request sent to frame received (render and network)."""
        self.frames = 0
        self.reconnects = 0
        self._connected = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="remote-engine", daemon=True)
        self._thread.start()
        if not self._connected.wait(connect_timeout) or self.status != "connected":
            self.close()
            raise RemoteError(f"cannot attach to {url}: {self.last_error or 'no answer'}")

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
            if self._unsent is None or self._ws is None or self._reopening:
                return
            (request, encoding, seq), self._unsent = self._unsent, None
            wire = next(self._gen)
            self._sent[wire] = (request, time.monotonic(), encoding, seq)
        msg = {"type": "render", "encoding": encoding,
               "request": P.request_to_json(request) | {"generation": wire}}
        if not self._send_quiet(msg):
            with self._cv:
                self._sent.pop(wire, None)
                self._unsent = self._unsent or (request, encoding, seq)

    def latest(self) -> Frame | None:
        with self._cv:
            return self._latest

    @property
    def busy(self) -> bool:
        with self._cv:
            return bool(self._sent) or self._unsent is not None

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: not self._sent and self._unsent is None, timeout)

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
        return {"status": self.status, "rtt_ms": self.rtt_ms, "frame_ms": self.frame_ms,
                "frame_bytes": sizes[-1] if sizes else None,
                "mean_frame_bytes": sum(sizes) / len(sizes) if sizes else None,
                "frames": self.frames, "reconnects": self.reconnects}

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
        job = RemoteJob(self, job_id, kind)
        self._jobs[job_id] = job
        if not self._send_quiet({"type": "job", "id": job_id, "kind": kind, "fields": fields or {}}):
            self._jobs.pop(job_id, None)
            job._finish(error=f"not connected ({self.status})")
        return job

    def download(self, path: str, dest: str | os.PathLike, progress: Progress | None = None,
                 timeout: float = 3600.0) -> Path:
        """Fetch a file from the server's exports/ folder to `dest` (written atomically, sha256 checked)."""
        dest = Path(dest)
        job_id = f"dl{next(self._ids)}"
        download = _Download(job_id, dest, progress)
        self._downloads[job_id] = download
        if not self._send_quiet({"type": "download", "id": job_id, "path": path}):
            self._downloads.pop(job_id, None)
            download.fail(f"not connected ({self.status})")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return download.future.result(timeout=0.1)
            except FutureTimeout:
                if progress is not None and progress.cancelled():
                    self._send_quiet({"type": "cancel", "id": job_id})
                if time.monotonic() > deadline:
                    self._send_quiet({"type": "cancel", "id": job_id})
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
        self._closing = True
        ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.status = "closed"

    # ---- requests and uploads ------------------------------------------------------------------------
    def _request(self, msg: dict, about: str, timeout: float = 60.0) -> Any:
        future: Future = Future()
        with self._cv:
            self._waiters.setdefault(about, deque()).append(future)
        if not self._send_quiet(msg):
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
                self._send(P.pack({"type": "upload_chunk", "id": upload_id, "offset": offset}, [data]))
                offset += len(data)
                if progress is not None:
                    progress.update(offset, size, f"uploading {path.name}")
        return self._request({"type": "upload_end", "id": upload_id}, "upload_end", timeout)

    def _send(self, data: str | bytes | dict) -> None:
        ws = self._ws
        if ws is None:
            raise RemoteError(f"not connected to {self.url} ({self.status})")
        with self._send_lock:
            ws.send(P.encode_text(data) if isinstance(data, dict) else data)

    def _send_quiet(self, msg: dict) -> bool:
        """Send; False when there is no connection (the caller decides what that means)."""
        try:
            self._send(msg)
            return True
        except (RemoteError, ConnectionClosed, OSError):
            return False

    # ---- the connection thread ----------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.25
        while not self._closing:
            try:
                ws = connect(self.url, compression=None, max_size=P.MAX_MESSAGE, open_timeout=10,
                             ping_interval=20, ping_timeout=30, close_timeout=2)
            except (OSError, InvalidHandshake, TimeoutError, InvalidURI) as e:
                self.last_error = f"{type(e).__name__}: {e}"
                if isinstance(e, InvalidURI) or not self.reconnect:
                    self._connected.set()
                    return
                self._wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            with ws:
                if not self._session(ws):
                    self._connected.set()
                    return
                delay = 0.25
        self.status = "closed"

    def _session(self, ws: ClientConnection) -> bool:
        """Say hello, then read until the connection ends; False when the server refused us."""
        try:
            ws.send(P.encode_text({"type": "hello", "protocol": P.PROTOCOL_VERSION, "token": self._token,
                                   "client": self._name}))
            welcome = P.decode_text(ws.recv(timeout=30))
        except (ConnectionClosed, TimeoutError, P.ProtocolError):
            self.status, self.last_error = "refused", "the server closed the connection after hello (wrong token?)"
            return False
        if welcome.get("type") != "welcome":
            self.status, self.last_error = "refused", str(welcome.get("message", welcome))[:300]
            return False
        self._attached(ws, welcome)
        try:
            self._read(ws)
        except (ConnectionClosed, OSError) as e:
            self.last_error = f"connection lost: {e}"
        except P.ProtocolError as e:
            self.last_error = f"bad message from the server: {e}"
            log.warning("%s: %s", self.url, self.last_error)
        self._detached()
        return True

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._closing and time.monotonic() < end:
            time.sleep(0.05)

    def _attached(self, ws: ClientConnection, welcome: dict) -> None:
        first = not self._connected.is_set()
        self.welcome, self._last_ping = welcome, 0.0
        with self._cv:
            self._ws, self.status = ws, "connected"
        self._set_model(welcome.get("model"))
        if not first:
            self.reconnects += 1
            log.info("reconnected to %s", self.url)
            if self._opened is not None:  # the model this client had open, before any frame
                self._reopening = True
                threading.Thread(target=self._reopen, args=(self._opened,), daemon=True).start()
        self._connected.set()
        self._flush_request()

    def _reopen(self, opened: tuple[str, Any]) -> None:
        try:
            if opened[0] == "path":
                self._request({"type": "open", "path": opened[1]}, "open", 300)
            else:
                self._upload(opened[1], "checkpoint", None, 600)
        except (RemoteError, OSError) as e:
            self.last_error = f"cannot open the model again after reconnecting: {e}"
            log.warning("%s", self.last_error)
        finally:
            self._reopening = False
            self._flush_request()

    def _detached(self) -> None:
        """The connection ended: fail what waited on it, keep the newest unanswered request to re-send."""
        with self._cv:
            self._ws = None
            self.status = "closed" if self._closing else "disconnected, reconnecting"
            if self._sent and self._unsent is None:
                newest = max(self._sent)
                request, _, encoding, seq = self._sent[newest]
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
            job._finish(error="the connection to the server was lost")
        downloads, self._downloads = self._downloads, {}
        for download in downloads.values():
            download.fail("the connection to the server was lost")

    def _read(self, ws: ClientConnection) -> None:
        while not self._closing:
            now = time.monotonic()
            if now - self._last_ping >= self._ping_s:
                self._last_ping = now
                self._send_quiet({"type": "ping", "t": now})
            try:
                data = ws.recv(timeout=min(1.0, self._ping_s))
            except TimeoutError:
                continue
            if isinstance(data, bytes):
                self._on_binary(*P.unpack(data), size=len(data))
            else:
                self._on_text(P.decode_text(data))

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

    def _on_text(self, m: dict) -> None:
        kind = m["type"]
        if kind == "pong" and isinstance(m.get("t"), float):
            self.rtt_ms = (time.monotonic() - m["t"]) * 1000
        elif kind == "model":
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
            self._jobs.pop(m["id"])._finish(error=message)
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
            job._finish(result=m.get("result") if isinstance(m.get("result"), dict) else {})
        elif kind == "job_cancelled":
            job._finish(cancelled=True)
        else:
            job._finish(error=str(m.get("message", "failed")))

    def _on_binary(self, header: dict, parts: list[memoryview], size: int) -> None:
        kind = header["type"]
        if kind == "frame":
            self._on_frame(header, parts, size)
        elif kind == "file":
            download = self._downloads.get(str(header.get("id")))
            if download is not None and len(parts) == 1 and download.chunk(header, parts[0]):
                self._downloads.pop(download.id, None)
        elif kind == "job_done":
            self._on_job(header, _arrays(header, parts))
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


def _arrays(header: dict, parts: list[memoryview]) -> dict[str, np.ndarray]:
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


def read_token(path: str | os.PathLike) -> str:
    """The client side of remote.auth: the token file copied from the server (its mode is not checked)."""
    from remote.auth import read_token_file
    return read_token_file(path, private=False)
