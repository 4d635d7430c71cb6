"""Progress reporting and cancellation shared by long work (exports, training, benchmarks).

Long functions take `progress: Progress | None`; they call `progress.update(done, total, message)` and
stop early with `Cancelled` when `progress.cancelled()` is true. The CLI shows a tqdm bar; the studio
reads the same object from its UI thread.
"""
from __future__ import annotations

import threading
from typing import Any


class Cancelled(Exception):
    """Raised by long work when its Progress was cancelled (nothing half-written is left behind)."""


class Progress:
    """Thread-safe (done, total, message) with a cancel flag; subclass or poll it."""

    def __init__(self) -> None:
        self.done, self.total, self.message = 0, 0, ""
        self._cancel = threading.Event()

    def update(self, done: int, total: int, message: str = "") -> None:
        self.done, self.total, self.message = done, total, message
        if self._cancel.is_set():
            raise Cancelled(message or "cancelled")

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


class Task:
    """Work that runs elsewhere (a thread, a server) and ends once: a result, an error or cancelled.
    Pollers read `done` and `progress`; `cancel` asks the work to stop at its next progress update."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.result: Any = None
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


def report(progress: Progress | None, done: int, total: int, message: str = "") -> None:
    """`progress.update(done, total, message)` when there is a Progress: long work takes None for none."""
    if progress is not None:
        progress.update(done, total, message)


class TqdmProgress(Progress):
    """Progress shown as a tqdm bar on stderr (rate and ETA included)."""

    def __init__(self, desc: str, unit: str = "it") -> None:
        super().__init__()
        self.desc, self.unit, self._bar = desc, unit, None

    def update(self, done: int, total: int, message: str = "") -> None:
        from tqdm import tqdm
        if self._bar is None or self._bar.total != total:
            if self._bar is not None:
                self._bar.close()
            # Work done before the bar appears is its `initial`, so the rate counts only what it saw.
            self._bar = tqdm(total=total, initial=done, desc=self.desc, unit=self.unit, unit_scale=True,
                             dynamic_ncols=True)
        self._bar.update(done - self._bar.n)
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()
        super().update(done, total, message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
