"""The server's loaded models: one RenderEngine per checkpoint, shared by the clients that opened it.

Every checkpoint, uploaded or named below the served root, goes through core.checkpoint.load_generator
(the restricted unpickler and its limits). At most `limit` models are held; one that no client uses is
dropped to make room. A model's `generation` grows on every (re)load, so clients can tell a hot-reloaded
snapshot from the one they saw.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.checkpoint import load_generator
from core.describe import model_rows
from core.engine import RenderEngine
from remote.protocol import FieldError

log = logging.getLogger(__name__)
MAX_MODELS = 3


@dataclass
class Model:
    key: str
    """'path:<relative path>' or 'upload:<sha256>'."""
    name: str
    """What clients see: the path relative to the served root, or 'upload:<file name>'."""
    path: Path
    """The checkpoint file (an upload's temporary copy is kept while the model is loaded)."""
    engine: RenderEngine
    generation: int = 1
    users: int = 0
    temporary: bool = False
    """`path` is an upload's copy, removed when the model is dropped."""
    _described: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """The "model" message's fields: what the studio's Model panel and camera need."""
        if self._described is not None and self._described["generation"] == self.generation:
            return self._described
        G = self.engine.base_G
        rows = dict(model_rows(G, self.path), file=self.name)  # the server's own paths stay on the server
        self._described = {"name": self.name, "file": self.path.name, "generation": self.generation, "rows": rows,
                "rendering_kwargs": json.loads(json.dumps(G.rendering_kwargs, default=str)),
                "num_ws": int(G.num_ws), "w_dim": int(G.w_dim),
                "neural_resolution": int(G.neural_rendering_resolution),
                "image_resolution": int(G.img_resolution)}
        return self._described

    def max_resolution(self) -> int:
        """The largest neural resolution a client may ask for (the Render panel's own bound)."""
        return max(2 * int(self.engine.base_G.neural_rendering_resolution), 128)


class ModelPool:
    def __init__(self, device: torch.device, limit: int = MAX_MODELS):
        self.device, self.limit = device, limit
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        """One load at a time (each can take a good part of the machine's memory)."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def acquire(self, key: str, name: str, path: Path, temporary: bool = False) -> Model:
        """The model for `key`, loaded from `path` unless it is loaded already; one more user. Blocking:
        call it off the event loop. CheckpointError/FieldError when it cannot be loaded."""
        with self._loading:
            with self._lock:
                model = self._models.get(key)
                if model is not None:
                    model.users += 1
                    self._models.move_to_end(key)
                    if temporary:
                        _remove(path)
                    return model
                self._make_room()
            try:
                G = load_generator(path, self.device)
            except BaseException:
                if temporary:
                    _remove(path)
                raise
            model = Model(key, name, path, RenderEngine(G, self.device), users=1, temporary=temporary)
            with self._lock:
                self._models[key] = model
            log.info("loaded %s on %s", name, self.device)
            return model

    def _make_room(self) -> None:
        """Drop unused models (oldest first) until one more fits (caller holds the lock)."""
        while len(self._models) >= self.limit:
            unused = [k for k, m in self._models.items() if m.users == 0]
            if not unused:
                raise FieldError(f"the server already holds {self.limit} models in use by clients")
            self._drop(self._models.pop(unused[0]))

    def use(self, model: Model) -> None:
        """One more user of a model that is loaded (no waiting for a load in progress)."""
        with self._lock:
            model.users += 1

    def release(self, model: Model | None) -> None:
        """One user less (the model stays loaded until its room is needed)."""
        if model is None:
            return
        with self._lock:
            model.users = max(0, model.users - 1)

    def reload(self, model: Model, path: Path) -> None:
        """Load `path` into `model`'s engine (a newer snapshot of a watched run); blocking."""
        with self._loading:
            G = load_generator(path, self.device)
            model.engine.set_generator(G, self.device)  # waits for a render in flight
            with self._lock:
                model.path, model.generation = path, model.generation + 1
        log.info("reloaded %s from %s", model.name, path.name)

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                self._drop(model)
            self._models.clear()

    @staticmethod
    def _drop(model: Model) -> None:
        if model.temporary:
            _remove(model.path)
        log.info("dropped %s", model.name)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
