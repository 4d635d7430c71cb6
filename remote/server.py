"""The remote studio's server: a WebSocket service around the render engine (websockets, asyncio).

One event loop reads and writes every connection; torch runs on the render thread (remote.render_loop),
on job threads (remote.jobs), on loader threads and on the run watch, never on the loop. Each client
gets its own sender task that writes its queued messages, newest frame and download chunks in that
order, so a slow reader only ever waits for itself.

Security: a connection must send a hello with the token first (within AUTH_TIMEOUT_S); otherwise it is
dropped with one log line and no answer. After that, a malformed or unknown message closes it; a
well-formed message with a bad value is answered with an error. Every queue per client is bounded.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from core.checkpoint import resolve_checkpoint
from core.fileio import process_alive
from remote import protocol as P
from remote.auth import same_token
from remote.frames import ENCODINGS, PARTS, encode_rgb
from remote.jobs import HANDLERS, Job, JobContext
from remote.models import Model, ModelPool
from remote.peer import CHECKPOINT_SUFFIXES, MAX_JOBS, MAX_UPLOAD, Peer
from remote.render_loop import RenderItem, RenderLoop
from remote.served_root import ServedRoot
from remote.watch import RunWatch

log = logging.getLogger(__name__)
AUTH_TIMEOUT_S = 10.0
MAX_CLIENTS = 64
JOB_SLOTS = 2
"""Jobs of all clients running at once (the others wait their turn)."""


@dataclass
class ServerConfig:
    target: Path
    """A checkpoint (its folder is served) or a training run directory (served and watched)."""
    token: str
    device: torch.device
    host: str = "127.0.0.1"
    port: int = 7860
    idle_timeout: float = 300.0
    """Seconds without any message from a client before it is closed (the client library pings)."""


class Server:
    def __init__(self, config: ServerConfig):
        self.config = config
        target = Path(config.target)
        self.run_dir = target if target.is_dir() and not (target / "init_kwargs.json").exists() else None
        self.root = ServedRoot(target if target.is_dir() else target.parent)
        self.pool = ModelPool(config.device)
        self.clients: dict[int, Peer] = {}
        self._next_id = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.default = self._load_default()
        self.default.users += 1  # pinned: never dropped to make room
        self.render_loop = RenderLoop(self._deliver)
        self.job_slots = threading.Semaphore(JOB_SLOTS)
        self.jobs: set[Job] = set()
        """Jobs of all clients still running (joined on close: no torch left running at exit)."""
        self.upload_dir = _upload_folder()
        self.watch = RunWatch(self.run_dir, self._reload_run, self._run_changed) if self.run_dir else None
        self.port = config.port
        self.started = threading.Event()
        """Set once the server listens (self.port is then the bound port)."""

    def _load_default(self) -> Model:
        """The model named on the command line (a run's newest snapshot, reloaded as new ones appear)."""
        path = resolve_checkpoint(self.config.target)
        if self.run_dir is not None:
            return self.pool.acquire("run", self.run_dir.resolve().name, path)
        return self.pool.acquire("path:" + self.root.relative(path), self.root.relative(path), path)

    # ---- lifetime -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or the task is cancelled); `started` is set once listening."""
        self.loop = asyncio.get_running_loop()
        logging.getLogger("websockets").setLevel(logging.CRITICAL)  # we log one line per event ourselves
        async with serve(self._handle, self.config.host, self.config.port, compression=None,
                         max_size=P.MAX_MESSAGE, max_queue=2, write_limit=2**20, open_timeout=AUTH_TIMEOUT_S,
                         ping_interval=20, ping_timeout=30, close_timeout=5, server_header=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            if self.watch is not None:
                self.watch.start()
            self.started.set()
            await (stop or asyncio.Event()).wait()

    def close(self) -> None:
        """Stop the threads and drop models and uploads (after `run` has returned)."""
        if self.watch is not None:
            self.watch.close()
        for client in list(self.clients.values()):
            self._forget(client, "server stopped")
        for job in list(self.jobs):
            job.cancel()
        for job in list(self.jobs):
            job.done.wait(60)
        self.render_loop.close()
        self.pool.close()
        shutil.rmtree(self.upload_dir, ignore_errors=True)

    # ---- one connection -----------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = "{}:{}".format(*ws.remote_address[:2]) if ws.remote_address else "?"
        if len(self.clients) >= MAX_CLIENTS:
            return self._refuse(ws, peer, f"{MAX_CLIENTS} clients are connected already")
        try:
            hello = P.decode_text(await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT_S))
        except (TimeoutError, ConnectionClosed, P.ProtocolError) as e:
            return self._refuse(ws, peer, "no hello" if isinstance(e, TimeoutError) else f"bad hello ({e})")
        if hello.get("type") != "hello" or not same_token(hello.get("token"), self.config.token):
            return self._refuse(ws, peer, "wrong or missing token")
        if hello.get("protocol") != P.PROTOCOL_VERSION:
            await ws.send(P.encode_text({"type": "error", "about": "hello", "message": (
                f"protocol version {str(hello.get('protocol'))[:10]}; this server speaks {P.PROTOCOL_VERSION}")}))
            await ws.close(1002, "protocol version")
            return
        self._next_id += 1
        client = Peer(self._next_id, ws, peer, self.default)
        self.pool.use(self.default)
        self.clients[client.id] = client
        log.info("client %d connected from %s", client.id, peer)
        sender = asyncio.create_task(client.send_loop())
        reason = "left"
        try:
            client.post({"type": "welcome", "protocol": P.PROTOCOL_VERSION, "client_id": client.id,
                         "device": str(self.config.device), "run": self.run_dir is not None,
                         "model": self.default.describe(), "limits": {
                             "message": P.MAX_MESSAGE, "chunk": P.CHUNK, "upload": MAX_UPLOAD,
                             "idle_timeout_s": self.config.idle_timeout}})
            while not client.closed:
                data = await asyncio.wait_for(ws.recv(), self.config.idle_timeout)
                if isinstance(data, bytes):
                    await self._binary(client, *P.unpack(data))
                else:
                    await self._dispatch(client, P.decode_text(data))
        except TimeoutError:
            reason = f"idle for {self.config.idle_timeout:g} s"
            await ws.close(1000, "idle")
        except P.ProtocolError as e:
            reason = f"protocol error: {e}"
            log.warning("closing client %d (%s): %s", client.id, peer, e)
            await ws.close(1008, "protocol error")
        except ConnectionClosed:
            pass
        except Exception as e:  # a bug of ours: log it, drop this client, keep serving the others
            reason = f"dropped after an internal error: {e}"
            log.exception("client %d", client.id)
            await ws.close(1011, "internal error")
        finally:
            self._forget(client, reason)
            sender.cancel()

    @staticmethod
    def _refuse(ws: ServerConnection, peer: str, why: str) -> None:
        """Drop a connection that has not authenticated: one log line, nothing answered."""
        log.warning("refused %s: %s", peer, why)
        ws.transport.abort()

    def _forget(self, client: Peer, reason: str) -> None:
        """Free everything a client held (it left, vanished, timed out or broke the protocol)."""
        if self.clients.pop(client.id, None) is None:
            return
        self.render_loop.forget(client)
        client.drop_all()
        self.pool.release(client.model)
        log.info("client %d %s", client.id, reason)

    # ---- messages -----------------------------------------------------------------------------------
    async def _dispatch(self, c: Peer, m: dict) -> None:
        kind = m["type"]
        if kind not in P.CLIENT_MESSAGES or kind == "hello":
            raise P.ProtocolError(f"unknown message type {kind[:40]!r}")
        try:
            handler = getattr(self, "_on_" + kind)
            result = handler(c, m)
            if asyncio.iscoroutine(result):
                await result
        except P.FieldError as e:
            c.post({"type": "error", "about": kind, "id": m.get("id") if isinstance(m.get("id"), str) else None,
                    "message": str(e)})

    def _on_ping(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type", "t"}, "ping")
        c.post({"type": "pong", "t": m.get("t") if isinstance(m.get("t"), (int, float)) else None})

    def _on_render(self, c: Peer, m: dict) -> None:
        """Into the client's render slot; a request with a bad value gets a frame that says so."""
        try:
            P.fields_of(m, {"type", "request", "encoding", "quality", "parts"}, "render")
            parts = m.get("parts", list(PARTS))
            if not isinstance(parts, list) or not set(parts) <= set(PARTS):
                raise P.FieldError(f"parts must be a list of {', '.join(PARTS)}")
            item = RenderItem(P.request_from_json(m.get("request", {})),
                              P.choice(m.get("encoding", "png"), ENCODINGS, "encoding"),
                              P.integer(m.get("quality", 85), 1, 100, "quality"), tuple(dict.fromkeys(parts)))
        except P.FieldError as e:
            request = m.get("request")
            generation = request.get("generation") if isinstance(request, dict) else None
            c.post_frame(P.pack({"type": "frame", "generation": generation if isinstance(generation, int) else None,
                                 "error": f"FieldError: {e}", "items": []}))
            return
        self.render_loop.submit(c, item)

    def _on_stats(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type"}, "stats")
        c.post({"type": "stats", "clients": len(self.clients), "waiting_renders": self.render_loop.waiting(),
                "rendered": self.render_loop.rendered, "dropped": self.render_loop.dropped,
                "jobs": sum(len(x.jobs) for x in self.clients.values()),
                "uploads": sum(len(x.uploads) + (x.upload is not None) for x in self.clients.values()),
                "upload_files": len(os.listdir(self.upload_dir)),
                "downloads": sum(len(x.downloads) for x in self.clients.values()),
                "models": len(self.pool), "rss_bytes": _rss_bytes()})

    def _on_files(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type", "what"}, "files")
        what = P.choice(m.get("what", "models"), ("models", "exports"), "what")
        suffixes = CHECKPOINT_SUFFIXES if what == "models" else (".ply", ".obj", ".glb", ".mp4", ".npz", ".ckpt",
                                                                 ".png", ".json", ".npy", ".mrc")
        c.post({"type": "files", "what": what, "files": self.root.listing(what, suffixes)})

    def _on_run(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type", "since", "grid"}, "run")
        if self.watch is None:
            raise P.FieldError("this server serves a checkpoint, not a training run")
        if "grid" in m:
            kind = P.choice(m["grid"], ("image", "raw", "depth", "reals"), "grid")
            found = self.watch.grid(kind)
            if found is None:
                raise P.FieldError(f"the run has no {kind} grid yet")
            c.post(P.pack({"type": "run_grid", "kind": kind, "name": found[0]}, [found[1]]))
            return
        since = P.integer(m.get("since", 0), 0, 2**31, "since")
        c.post({"type": "run", **self.watch.summary(), "since": since, "entries": self.watch.metrics(since)})

    async def _on_open(self, c: Peer, m: dict) -> None:
        """Switch the client to a checkpoint below the served root (null: the server's own model)."""
        P.fields_of(m, {"type", "path"}, "open")
        if c.loading:
            raise P.FieldError("a model is already being opened on this connection")
        name = m.get("path")
        if name is None:
            self._switch(c, self.default, "opened")
            self.pool.use(self.default)
            return
        path = self.root.existing(name, "path")
        resolved = resolve_checkpoint(path)
        rel = self.root.relative(resolved)  # a run directory's newest snapshot: still inside the root
        await self._load(c, "path:" + rel, rel, resolved, False)

    async def _load(self, c: Peer, key: str, name: str, path: Path, temporary: bool) -> None:
        c.loading = True
        try:
            model = await asyncio.to_thread(self.pool.acquire, key, name, path, temporary)
        except Exception as e:  # CheckpointError and friends: one line to the client
            from core.errors import one_line
            raise P.FieldError(f"cannot open {name}: {one_line(e, 300)}") from None
        finally:
            c.loading = False
        if c.closed:
            self.pool.release(model)
            return
        self._switch(c, model, "opened")

    def _switch(self, c: Peer, model: Model, reason: str) -> None:
        old, c.model = c.model, model
        self.pool.release(old)
        c.post({"type": "model", "reason": reason, "model": model.describe()})

    # ---- uploads ------------------------------------------------------------------------------------
    def _on_upload_begin(self, c: Peer, m: dict) -> None:
        c.begin_upload(m, self.upload_dir)

    async def _binary(self, c: Peer, header: dict, parts: list[memoryview]) -> None:
        if header.get("type") != "upload_chunk":
            raise P.ProtocolError(f"unknown binary message {str(header.get('type'))[:40]!r}")
        if c.upload is None:
            raise P.ProtocolError("upload chunk without upload_begin")
        await c.upload.write(header, parts)

    async def _on_upload_end(self, c: Peer, m: dict) -> None:
        up = c.end_upload(m)
        if up is not None:  # a checkpoint: load it as this client's model
            await self._load(c, "upload:" + up.digest.hexdigest(), "upload:" + up.name, up.path, True)

    # ---- jobs and downloads -------------------------------------------------------------------------
    def _on_job(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type", "id", "kind", "fields"}, "job")
        job_id, kind = P.text(m.get("id"), "id", 64), P.text(m.get("kind"), "kind", 64)
        if job_id in c.jobs or len(c.jobs) >= MAX_JOBS:
            raise P.FieldError(f"job id {job_id!r} is in use, or {MAX_JOBS} jobs are running already")
        fields = m.get("fields", {})
        if not isinstance(fields, dict) or kind not in HANDLERS:
            raise P.FieldError(f"a job needs an object of fields and one of the kinds {', '.join(HANDLERS)}")
        self.pool.use(c.model)  # the job keeps its model loaded, whatever the client opens meanwhile
        ctx = JobContext(c.model, self.root, c.uploads, c.results, c.id,
                         preview=lambda name, rgb: self._call(c.post, _preview(job_id, name, rgb)))
        job = Job(job_id, kind, fields, ctx, self.job_slots,
                  lambda job, what, result, arrays: self._call(self._job_event, c, job, what, result, arrays))
        c.jobs[job_id] = job
        self.jobs.add(job)

    def _job_event(self, c: Peer, job: Job, what: str, result: dict, arrays: dict[str, np.ndarray]) -> None:
        if what == "progress":
            c.post(result, progress_of=job.id)
            return
        self.pool.release(job.ctx.model)
        self.jobs.discard(job)
        c.jobs.pop(job.id, None)
        c.progress.pop(job.id, None)
        if what == "done":
            msg = {"type": "job_done", "id": job.id, "kind": job.kind, "result": result}
            if arrays:
                arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
                msg["arrays"] = [{"name": k, "dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()]
                c.post(P.pack(msg, [v.tobytes() for v in arrays.values()]))
            else:
                c.post(msg)
        elif what == "cancelled":
            c.post({"type": "job_cancelled", "id": job.id, "kind": job.kind})
        else:
            c.post({"type": "job_error", "id": job.id, "kind": job.kind, "message": result["message"]})

    def _on_cancel(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type", "id"}, "cancel")
        c.cancel(P.text(m.get("id"), "id", 64))

    def _on_download(self, c: Peer, m: dict) -> None:
        P.fields_of(m, {"type", "id", "path"}, "download")
        c.start_download(P.text(m.get("id"), "id", 64), self.root.export_file(m.get("path")))

    # ---- from other threads -------------------------------------------------------------------------
    def _call(self, fn, *args) -> None:
        """Run fn(*args) on the event loop (from a render, job or watch thread)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _deliver(self, client: Peer, message: bytes) -> None:
        self._call(client.post_frame, message)

    def _reload_run(self, path: Path) -> None:
        """A newer snapshot of the served run: load it into the run's engine, tell its clients."""
        self.pool.reload(self.default, path)
        self._call(self._announce_reload)

    def _announce_reload(self) -> None:
        for c in list(self.clients.values()):
            if c.model is self.default:
                c.post({"type": "model", "reason": "reloaded", "model": self.default.describe()})

    def _run_changed(self, summary: dict) -> None:
        def post_all() -> None:
            for c in list(self.clients.values()):
                c.post({"type": "run_changed", **summary})
        self._call(post_all)


def _preview(job_id: str, name: str, rgb: np.ndarray) -> bytes:
    """A job's live image (an inversion's reconstruction) as a PNG message."""
    return P.pack({"type": "job_preview", "id": job_id, "name": name, "format": "png",
                   "shape": list(rgb.shape[:2])}, [encode_rgb(rgb, "png")])


def _upload_folder() -> Path:
    """A private temporary folder for uploads (mode 0700), named with our process id; those of servers that
    were killed before they could remove theirs are removed here."""
    base = Path(tempfile.gettempdir())
    for old in base.glob("triplane-serve-*-*") if os.name == "posix" else ():
        pid = old.name.split("-")[2]
        try:
            if pid.isdigit() and old.stat().st_uid == os.getuid() and not process_alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix=f"triplane-serve-{os.getpid()}-"))


def _rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def serve_forever(server: Server) -> None:
    """Run the server on this thread until Ctrl-C / SIGTERM (raised as KeyboardInterrupt), then clean up."""
    try:
        asyncio.run(server.run())
    finally:
        server.close()
