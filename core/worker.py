"""RenderWorker: renders engine requests on a background thread, newest request wins.

The UI thread calls `submit` (never blocks) and polls `latest()`; requests that arrive while a render
is running replace each other in a one-slot mailbox, so a stale camera is never rendered after a new one.
"""
from __future__ import annotations

import threading

from core.engine import Frame, RenderEngine, RenderRequest


class FrameSource:
    """The polling side of a render path (RenderWorker here, remote.client.RemoteEngine): subclasses hold
    `_cv` and `_latest` and say in `_idle()` (called with `_cv` held) whether no request is in flight."""

    def latest(self) -> Frame | None:
        """The most recently finished frame (None before the first)."""
        with self._cv:
            return self._latest

    @property
    def busy(self) -> bool:
        """True while a request is waiting or rendering."""
        with self._cv:
            return not self._idle()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no request is waiting or rendering (for scripts and tests). False on timeout."""
        with self._cv:
            return self._cv.wait_for(self._idle, timeout)


class RenderWorker(FrameSource):
    def __init__(self, engine: RenderEngine):
        self.engine = engine
        self._cv = threading.Condition()
        self._pending: RenderRequest | None = None
        self._latest: Frame | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="render-worker", daemon=True)
        self._thread.start()

    def submit(self, request: RenderRequest) -> None:
        """Queue a request, replacing any request that has not started yet."""
        with self._cv:
            self._pending = request
            self._cv.notify()

    def _idle(self) -> bool:
        return not self._busy and self._pending is None

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._pending = None
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                request, self._pending, self._busy = self._pending, None, True
            frame = self.engine.render(request)
            with self._cv:
                self._busy = False
                if self._closed:
                    return
                self._latest = frame
                self._cv.notify_all()
