"""A served training run read through the server (`main.py serve RUN_DIR`): the reading side of
training.runner.RunReader (metrics, options, newest grids), so the Training panel shows a remote run as
it shows a local one.

A thread asks the server once a second for the metric entries it has not seen and fetches a grid when the
run names a newer one (saved as a PNG in a private temporary folder, which the panel reads as it reads a run
directory's grid). The UI thread only reads what the thread last stored. Snapshots are not the panel's
business here: the server hot-reloads them and the session shows the reloaded model.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

from remote.client import RemoteEngine, RemoteError

log = logging.getLogger(__name__)
POLL_S = 1.0


class ServedRun:
    def __init__(self, client: RemoteEngine, name: str, poll_s: float = POLL_S):
        self.client, self.run_dir = client, Path(name)
        self._entries: list[dict] = []
        self._options: dict | None = None
        self._grids: dict[str, Path] = {}
        self._names: dict[str, str] = {}
        self._folder = Path(tempfile.mkdtemp(prefix="triplane-served-run-"))
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="served-run", daemon=True)
        self._thread.start()

    # ---- RunReader's reading side (UI thread) --------------------------------------------------------
    def metrics(self) -> list[dict]:
        return self._entries

    def options(self) -> dict | None:
        return self._options

    def newest_grids(self) -> dict[str, Path]:
        return dict(self._grids)

    def newest_snapshot(self) -> Path | None:
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        shutil.rmtree(self._folder, ignore_errors=True)

    # ---- the polling thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.client.status == "connected":
                try:
                    self._poll()
                except (RemoteError, OSError) as e:  # disconnected meanwhile: the next poll tries again
                    log.debug("served run: %s", e)
            self._stop.wait(self._poll_s)

    def _poll(self) -> None:
        answer = self.client.run_metrics(since=len(self._entries))
        if answer.get("metrics", 0) < len(self._entries):   # the trainer resumed and trimmed its log
            self._entries = []
            return
        self._entries = self._entries + [e for e in answer.get("entries", []) if isinstance(e, dict)]
        if isinstance(answer.get("options"), dict):
            self._options = answer["options"]
        grids = answer.get("grids") if isinstance(answer.get("grids"), dict) else {}
        for kind in ("image",):
            name = grids.get(kind)
            if isinstance(name, str) and name != self._names.get(kind):
                from core.imaging import save_png
                fetched, rgb = self.client.run_grid(kind)
                path = save_png(self._folder / Path(fetched).name, rgb)
                self._grids[kind], self._names[kind] = Path(path), name
