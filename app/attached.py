"""The studio attached to `main.py serve`: what the Session holds instead of a local engine and worker.

remote.client.RemoteEngine renders the session's RenderRequests into the same Frames as the local worker
(lossless PNG), so the session uses it as its worker. This module adds the rest: opening a model on the
server (a served path, or a local file uploaded), the studio's engine actions run as server jobs (one
table keyed by action type: fields out, progress in, files downloaded to the path the panel chose), the
connection's state and figures for the status line and the Performance panel, and a served training run
for the Training panel (app.served_run). Panels never see any of it.
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.actions import Action, ComputePCA, ExportMesh, ExportVideo, InspectPlanes, SaveLatent
from app.attached_inversion import AttachedInversion
from app.backend import LoadedModel
from app.served_run import ServedRun
from app.state import AppState
from core.config import RenderOptions
from core.progress import Cancelled, Progress
from remote.auth import default_token_file
from remote.client import RemoteEngine, RemoteError, read_token
from remote.protocol import to_json


def loaded_model(described: dict[str, Any], url: str) -> LoadedModel:
    """The session's view of a model from the server's "model" message (no generator here); the Model
    panel's first row names the server, so an attached studio says so."""
    rows = {"server": url} | {str(k): str(v) for k, v in dict(described["rows"]).items()}
    name, file = str(described["name"]), str(described.get("file") or "")
    if file and file != Path(name).name:   # a served run: which snapshot
        rows["file"] = f"{name}/{file}"
    return LoadedModel(Path(name), rows, RenderOptions.from_kwargs(dict(described["rendering_kwargs"])),
                       int(described["num_ws"]), int(described["neural_resolution"]),
                       int(described["image_resolution"]), handle=int(described.get("generation", 1)),
                       remember=False)


class RemoteBackend:
    """app.backend.Backend on a server: RemoteEngine is the worker, engine actions run as server jobs."""

    engine = None
    """No local engine: the model lives on the server."""

    def __init__(self, client: RemoteEngine, url: str):
        self.client, self.url = client, url
        self.worker: RemoteEngine | None = None
        self._status = "connected"
        self._serial = client.model_serial
        self._shown: LoadedModel | None = None
        self.served_run: ServedRun | None = None
        """The served training run the Training panel reads, when the server serves one."""

    # ---- models -------------------------------------------------------------------------------------
    def load(self, path: str, progress: Progress) -> LoadedModel:
        """Open `path` on the server (a job thread): the server's address is its own model (what `serve`
        was started with), an existing local file is uploaded, anything else names a checkpoint below the
        served folder."""
        local = Path(path).expanduser()
        if path != self.url and local.is_file():
            described = self.client.open_upload(local, progress)
        else:
            described = self.client.open(None if path == self.url else path)
        self._serial = self.client.model_serial
        return loaded_model(described, self.url)

    def attach(self, loaded: LoadedModel) -> None:
        self._shown, self.worker = loaded, self.client

    def inversion(self, state: AppState) -> AttachedInversion:
        return AttachedInversion(state, self)

    # ---- per frame (UI thread) ----------------------------------------------------------------------
    def poll(self, state: AppState) -> LoadedModel | None:
        """Connection state in the status line, round trip and bytes per frame in the Performance panel, a
        served run for the Training panel; the model again when the server hot-reloaded it (a served run's
        new snapshot; not when a restarted server welcomes us with the model we had)."""
        if self.served_run is None and self.client.welcome.get("run") and self.client.model is not None:
            self.served_run = ServedRun(self.client, str(self.client.model["name"]))
            state.training.run_dir, state.training.reader = str(self.served_run.run_dir), self.served_run
        stats = self.client.stats()
        status = stats["status"]
        if status != self._status:
            if status == "connected":
                state.set_status(f"reconnected to {self.url}")
            else:
                state.set_status(f"{status} ({self.url})", error=True)
            self._status = status
        rtt, frame_ms, size = stats["rtt_ms"], stats["frame_ms"], stats["mean_frame_bytes"]
        state.perf.device = f"{self.client.welcome.get('device', '?')} on the server"
        state.perf.link = [
            ("server", f"{self.url} ({status})"),
            ("round trip", "-" if rtt is None else f"{rtt:.1f} ms ping, last frame {frame_ms or 0:.0f} ms"),
            ("bytes/frame", "-" if size is None else f"{stats['frame_bytes'] / 1024:.0f} KiB last, "
                                                     f"{size / 1024:.0f} KiB mean"),
            ("reconnects", str(stats["reconnects"]))]
        if self._shown is None or self.client.model_serial == self._serial or self.client.model is None:
            return None
        self._serial = self.client.model_serial
        model = loaded_model(self.client.model, self.url)
        if (model.path, model.handle, model.info) == (self._shown.path, self._shown.handle, self._shown.info):
            return None
        return model

    # ---- actions ------------------------------------------------------------------------------------
    def run(self, action: Action, progress: Progress) -> Any:
        """Run an engine action on the server with the same result a local run gives (a status line,
        or InspectPlanes' dict); files land where the action says."""
        handler = HANDLERS.get(type(action))
        if handler is None:
            raise RuntimeError(f"{action.name} is not available while attached to {self.url}")
        return handler(self, action, progress)

    def job(self, kind: str, fields: dict, progress: Progress):
        """Start a server job and follow it: its progress shown here, Cancel passed on; the finished job."""
        job = self.client.job(kind, fields)
        while not job.wait(0.05):
            p = job.progress
            if progress.cancelled():
                job.cancel()
            else:
                progress.done, progress.total, progress.message = p.done, p.total, p.message
        if job.cancelled:
            raise Cancelled(f"{kind} cancelled")
        if job.error:
            raise RuntimeError(job.error)
        return job

    def fetch(self, job, dest: Path, progress: Progress) -> str:
        """Download a job's files beside `dest` (the first one as `dest` itself) -> status line."""
        files = job.result.get("files", [])
        for i, name in enumerate(files):
            target = dest if i == 0 else dest.parent / Path(name).name
            progress.done, progress.total, progress.message = 0, 0, f"downloading {Path(name).name}"
            self.client.download(name, target, progress)   # bytes so far in progress; its Cancel stops it
        return f"wrote {dest} (made on {self.url})" if files else job.result.get("message", "done")

    def close(self) -> None:
        if self.served_run is not None:
            self.served_run.close()
        self.client.close()


def _mesh(a: RemoteBackend, action: ExportMesh, progress: Progress) -> str:
    fields = {"path": action.path.name, "latent": to_json(action.latent),
              "options": to_json(action.options, changed_only=True)}
    return a.fetch(a.job("ExportMesh", fields, progress), action.path, progress)


def _video(a: RemoteBackend, action: ExportVideo, progress: Progress) -> str:
    fields = {"path": action.path.name, "request": to_json(action.request), "camera": to_json(action.camera),
              "kind": action.kind, "frames": action.frames, "fps": action.fps, "mode": action.mode,
              "interp_seed": action.interp_seed, "depth_mask": action.depth_mask}
    if action.keyframes is not None:
        fields["keyframes"] = action.keyframes.to_json()
    return a.fetch(a.job("ExportVideo", fields, progress), action.path, progress)


def _latent(a: RemoteBackend, action: SaveLatent, progress: Progress) -> str:
    fields = {"path": action.path.name, "latent": to_json(action.latent), "settings": to_json(action.settings),
              "camera": list(action.camera)}
    return a.fetch(a.job("SaveLatent", fields, progress), action.path, progress)


def _pca(a: RemoteBackend, action: ComputePCA, progress: Progress) -> str:
    return a.job("ComputePCA", {}, progress).result.get("message", "principal directions of W ready")


def _planes(a: RemoteBackend, action: InspectPlanes, progress: Progress) -> dict:
    fields = {"latent": to_json(action.latent), "channel": action.channel, "noise_mode": action.noise_mode,
              "noise_seed": action.noise_seed}
    job = a.job("InspectPlanes", fields, progress)
    out = dict(job.result)
    if isinstance(out.get("range"), list):
        out["range"] = tuple(out["range"])
    return out | dict(job.arrays)


HANDLERS: dict[type, Callable[[RemoteBackend, Any, Progress], Any]] = {
    ExportMesh: _mesh, ExportVideo: _video, SaveLatent: _latent, ComputePCA: _pca, InspectPlanes: _planes}
"""Engine action type -> its attached runner (the server job of the same name, then the downloads)."""


def attach(url: str, token_file: str | None, timeout: float = 30.0) -> RemoteBackend:
    """Connect to `serve` at `url` with the token in `token_file` (default: the one `serve` writes on this
    machine); a StudioError in one line when it cannot."""
    if not url.startswith(("ws://", "wss://")):
        raise RemoteError(f"--connect {url}: expected ws://HOST:PORT")
    token = read_token(Path(token_file).expanduser() if token_file else default_token_file())
    try:
        parts = urlsplit(url)
        address = (parts.hostname, parts.port or 80)
    except ValueError as e:
        raise RemoteError(f"--connect {url}: {e} (expected ws://HOST:PORT)") from None
    try:   # a server that is not there is said at once (the link itself retries for `timeout`)
        socket.create_connection(address, timeout=min(timeout, 10.0)).close()
    except OSError as e:
        raise RemoteError(f"cannot attach to {url}: {getattr(e, 'strerror', None) or e} (is `main.py serve` "
                          "running there, or the SSH tunnel open?)") from None
    return RemoteBackend(RemoteEngine(url, token, connect_timeout=timeout), url)
