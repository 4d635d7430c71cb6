"""Where the session's model lives and its engine actions run: a RenderEngine on this machine
(LocalBackend), or a server for `--connect` (app.attached.RemoteBackend). The Session holds one backend;
panels never know which.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from app.actions import Action
from app.handlers import run_action
from app.inversion import InversionJobs
from app.state import AppState
from core.checkpoint import load_generator, resolve_checkpoint
from core.config import RenderOptions
from core.describe import model_rows
from core.engine import RenderEngine
from core.progress import Progress
from core.worker import RenderWorker


@dataclass(frozen=True)
class LoadedModel:
    """A model just opened: what the session shows of it (ModelState)."""
    path: Path
    info: dict[str, str]
    options: RenderOptions
    num_ws: int
    neural_resolution: int
    image_resolution: int
    handle: Any = None
    """The backend's own (LocalBackend: the RenderEngine), given back to `attach` on the UI thread."""
    remember: bool = True
    """Goes to File > Recent when opened (a server's models do not: their paths are the server's)."""


class Backend(Protocol):
    """`load` opens a path (job thread, one at a time), `attach` makes it current (UI thread), `run` runs an
    engine action on it (job thread); `worker` (None before the first attach) renders: a RenderWorker, or
    anything with its submit/latest/busy/close (remote.client.RemoteEngine)."""
    engine: RenderEngine | None
    """The local engine (the inversion runs on it); None on a server."""
    worker: Any

    def load(self, path: str, progress: Progress) -> LoadedModel: ...
    def attach(self, loaded: LoadedModel) -> None: ...
    def run(self, action: Action, progress: Progress) -> Any: ...
    def inversion(self, state: AppState) -> Any:
        """The Invert panel's jobs (InversionJobs: handlers, poll, busy, model_changed, close)."""

    def poll(self, state: AppState) -> LoadedModel | None:
        """Once per UI frame: the backend's state into AppState; a model it reloaded by itself (or None)."""

    def close(self) -> None: ...


class LocalBackend:
    """Models open into one RenderEngine on `device`; a RenderWorker renders the frames."""

    def __init__(self, device: torch.device, host_frames: bool = True):
        self.device, self.host_frames = device, host_frames
        self.engine: RenderEngine | None = None
        self.worker: RenderWorker | None = None

    def load(self, path: str, progress: Progress) -> LoadedModel:
        resolved = resolve_checkpoint(path)
        G = load_generator(resolved, device=self.device)
        engine = self.engine   # only attach (UI thread) assigns it, and loads run one at a time
        if engine is None:
            engine = RenderEngine(G, self.device, host_frames=self.host_frames)
        else:
            engine.set_generator(G, self.device)  # waits for a render in flight
        return LoadedModel(resolved, model_rows(G, resolved), G.options, G.num_ws,
                           int(G.neural_rendering_resolution), int(G.img_resolution), engine)

    def attach(self, loaded: LoadedModel) -> None:
        self.engine = loaded.handle
        if self.worker is None:
            self.worker = RenderWorker(self.engine)

    def run(self, action: Action, progress: Progress) -> Any:
        return run_action(action, self.engine, progress)

    def inversion(self, state: AppState) -> InversionJobs:
        return InversionJobs(state, lambda: self.engine)

    def poll(self, state: AppState) -> None:
        return None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
