"""Log panel: a logging.Handler feeding a bounded deque, shown as a scrolling, coloured list.

Each record is one line (long lines wrap); a traceback, when the record has one, stays behind a
"details" toggle under its line, so ordinary user errors read as one line."""
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
        self.records: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=maxlen)
        """(level, one-line text, details: traceback or extra lines, may be empty)."""
        self._lock = threading.Lock()
        self._line = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def emit(self, record: logging.LogRecord) -> None:
        first, _, rest = self._line.format(_without_exc(record)).partition("\n")
        details = rest
        if record.exc_info:
            details = (details + "\n" if details else "") + self._line.formatException(record.exc_info)
        with self._lock:
            self.records.append((record.levelno, first, details))

    def snapshot(self) -> list[tuple[int, str, str]]:
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
            for i, (level, text, details) in enumerate(self.handler.snapshot()):
                color = COLORS.get(level)
                if color is not None:
                    imgui.push_style_color(imgui.Col_.text, color)
                imgui.text_wrapped(text)
                if color is not None:
                    imgui.pop_style_color()
                if details and imgui.tree_node(f"details##{i}"):
                    imgui.text_unformatted(details)
                    imgui.tree_pop()
            if imgui.get_scroll_y() >= imgui.get_scroll_max_y():
                imgui.set_scroll_here_y(1.0)
        finally:
            imgui.end_child()


def _without_exc(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of the record without exception text (the traceback goes to the details)."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.exc_info, copy.exc_text = None, None
    return copy
