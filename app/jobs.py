"""Background jobs for the UI: run one function in a thread, poll its progress, result or error.

Used for checkpoint loading, plane inspection, mesh/video export and W-direction analysis, so that the
UI thread never waits for torch. A job's function receives a core.progress.Progress it may report to;
Cancel sets the progress flag and the function stops at its next update (core.progress.Cancelled).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from core.progress import Cancelled, Progress, Task

log = logging.getLogger(__name__)
_live: set[Job] = set()
_live_lock = threading.Lock()


def live_jobs() -> list[Job]:
    """Jobs still running (the studio cancels and joins them on exit: torch must not be running in a
    daemon thread while the interpreter shuts down)."""
    with _live_lock:
        return list(_live)


class Job(Task):
    """One run of `fn(progress)` on a daemon thread."""

    def __init__(self, name: str, fn: Callable[[Progress], Any]):
        super().__init__(Progress())
        self.name = name
        with _live_lock:
            _live.add(self)
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"job-{name}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[Progress], Any]) -> None:
        try:
            self.result = fn(self.progress)
        except Cancelled:
            self.cancelled = True
        except Exception as e:  # shown in the status line; the traceback stays behind the log's details
            self.error = str(e) or type(e).__name__
            log.exception("%s failed: %s", self.name, self.error)
        finally:
            with _live_lock:
                _live.discard(self)
            self._done.set()
