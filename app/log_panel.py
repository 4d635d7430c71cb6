"""Log panel: a logging.Handler feeding a bounded deque, shown as a scrolling, coloured list."""
from __future__ import annotations

import collections
import logging
import threading

from imgui_bundle import imgui

from app.panel import Panel
from app.state import AppState

COLORS = {logging.ERROR: imgui.ImVec4(1.0, 0.45, 0.4, 1.0), logging.WARNING: imgui.ImVec4(1.0, 0.8, 0.3, 1.0)}


class DequeHandler(logging.Handler):
    """Keeps the last `maxlen` formatted records (thread-safe: workers log too)."""

    def __init__(self, maxlen: int = 500):
        super().__init__(logging.INFO)
        self.records: collections.deque[tuple[int, str]] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append((record.levelno, self.format(record)))

    def snapshot(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self.records)


class LogPanel(Panel):
    name = "Log"
    default_open = False

    def __init__(self, handler: DequeHandler):
        super().__init__()
        self.handler = handler

    def draw(self, state: AppState) -> None:
        if imgui.button("Clear"):
            self.handler.records.clear()
        imgui.begin_child("log-lines")
        try:
            for level, text in self.handler.snapshot():
                color = COLORS.get(level)
                if color is not None:
                    imgui.text_colored(color, text)
                else:
                    imgui.text_unformatted(text)
            if imgui.get_scroll_y() >= imgui.get_scroll_max_y():
                imgui.set_scroll_here_y(1.0)
        finally:
            imgui.end_child()
