"""Watching a served training run: new snapshots are hot-reloaded, curves and image grids are served.

A thread polls the run directory through training.runner.RunReader (what the local Training panel reads)
once a second. The trainer writes snapshots and grids atomically and appends whole metric lines, so a poll
never sees half a file.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.runner import RunReader

log = logging.getLogger(__name__)
POLL_S = 1.0
MAX_ENTRIES = 500
"""Metric entries per answer (a client asks again from where it stopped)."""
MAX_GRID_BYTES = 16 * 2**20


class RunWatch:
    def __init__(self, run_dir: Path, on_snapshot: Callable[[Path], None], on_change: Callable[[dict], None],
                 poll_s: float = POLL_S):
        """`on_snapshot(path)`: a newer snapshot appeared (called on the watch thread; it may block);
        `on_change(summary)`: anything the clients see changed."""
        self.reader = RunReader(run_dir)
        self._on_snapshot, self._on_change, self._poll_s = on_snapshot, on_change, poll_s
        self._lock = threading.Lock()
        self._summary: dict[str, Any] = {}
        self.snapshot = self.reader.newest_snapshot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-watch", daemon=True)

    def start(self) -> None:
        self._poll()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def summary(self) -> dict[str, Any]:
        """{snapshot, metrics (count), grids {kind: file name}, options}."""
        with self._lock:
            return dict(self._summary)

    def metrics(self, since: int) -> list[dict]:
        """Metric entries from index `since` on (at most MAX_ENTRIES)."""
        with self._lock:
            return self.reader.metrics()[max(0, since):max(0, since) + MAX_ENTRIES]

    def grid(self, kind: str) -> tuple[str, bytes] | None:
        """(file name, PNG bytes) of the newest grid of `kind` (image, raw, depth, reals), or None."""
        with self._lock:
            path = self.reader.newest_grids().get(kind)
        if path is None:
            return None
        try:
            if path.stat().st_size > MAX_GRID_BYTES:
                return None
            return path.name, path.read_bytes()
        except OSError:
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._poll()
            except Exception:  # a bad snapshot must not end the watch: the next one may load
                log.exception("watching %s", self.reader.run_dir)

    def _poll(self) -> None:
        newest = self.reader.newest_snapshot()
        if newest is not None and newest != self.snapshot:
            self.snapshot = newest
            try:
                self._on_snapshot(newest)
            except Exception as e:  # noqa: BLE001 - one line per snapshot that does not load
                log.error("cannot reload %s: %s", newest.name, e)
        with self._lock:
            summary = {"snapshot": self.snapshot.name if self.snapshot else None,
                       "metrics": len(self.reader.metrics()),
                       "grids": {k: p.name for k, p in self.reader.newest_grids().items()},
                       "options": self.reader.options()}
            changed, self._summary = summary != self._summary, summary
        if changed:
            self._on_change(summary)
