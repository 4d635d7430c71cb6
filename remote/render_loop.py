"""The server's render thread: each client has a one-request slot (a newer request replaces one that has
not started: latest wins), and clients with work are served in turn, so one dragging client cannot starve
the others. Frames are encoded here too; the event loop only sends bytes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.engine import Frame, RenderRequest
from core.errors import one_line
from remote.frames import encode_frame
from remote.protocol import FieldError, pack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderItem:
    """One client's render request and how it wants the frame sent."""
    request: RenderRequest
    encoding: str = "png"
    quality: int = 85
    parts: tuple[str, ...] = ("image", "image_raw", "depth", "opacity")


class RenderLoop:
    def __init__(self, deliver: Callable[[Any, bytes], None]):
        """`deliver(client, message)` is called on this thread with each encoded frame."""
        self._deliver = deliver
        self._cv = threading.Condition()
        self._queue: deque = deque()
        """Clients whose slot holds a request, in the order they will be served."""
        self._slots: dict[Any, RenderItem] = {}
        self._dropped: dict[Any, int] = {}
        self.busy_with: Any = None
        self.rendered = 0
        self.dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="render-loop", daemon=True)
        self._thread.start()

    def submit(self, client: Any, item: RenderItem) -> None:
        """Put `item` in the client's slot; a request still waiting there is dropped (latest wins)."""
        with self._cv:
            if client in self._slots:
                self._dropped[client] = self._dropped.get(client, 0) + 1
                self.dropped += 1
            else:
                self._queue.append(client)
            self._slots[client] = item
            self._cv.notify()

    def forget(self, client: Any) -> None:
        """Drop whatever the client has waiting (it left)."""
        with self._cv:
            if self._slots.pop(client, None) is not None:
                self._queue.remove(client)
            self._dropped.pop(client, None)

    def waiting(self) -> int:
        with self._cv:
            return len(self._slots)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                client = self._queue.popleft()
                item = self._slots.pop(client)
                dropped = self._dropped.pop(client, 0)
                self.busy_with = client
            try:
                message = self._render(client, item, dropped)
            except Exception:  # never lose the loop: the client gets no frame for this one request
                log.exception("rendering for client %s", getattr(client, "id", "?"))
                message = None
            with self._cv:
                self.busy_with = None
                self.rendered += 1
            if message is not None:
                self._deliver(client, message)

    @staticmethod
    def _render(client: Any, item: RenderItem, dropped: int) -> bytes | None:
        model = client.model
        if model is None or client.closed:
            return None
        start = time.perf_counter()
        if item.request.resolution is not None and item.request.resolution > model.max_resolution():
            frame = Frame(request=item.request, error=f"FieldError: resolution {item.request.resolution} is "
                                                      f"above this model's limit {model.max_resolution()}")
        else:
            frame = model.engine.render(item.request)
        try:
            header, parts = encode_frame(frame, item.encoding, item.quality, item.parts)
        except (FieldError, ValueError) as e:
            header, parts = encode_frame(Frame(request=item.request, error=one_line(e)))
        header.update(model=model.key, model_generation=model.generation, dropped=dropped,
                      server_s=time.perf_counter() - start)
        return pack(header, parts)
