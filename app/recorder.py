"""Screen recording of the viewport to MP4 (imageio-ffmpeg, H.264).

The UI thread only reads the view back from GL; frames go through a bounded queue to an encoder
thread, so ffmpeg never runs on the UI thread. Frames are written to a temporary file beside the
target, renamed into place when recording stops, so an interrupted recording never leaves a broken
MP4 under the chosen name.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

from app.state import AppState

log = logging.getLogger(__name__)
QUEUE_FRAMES = 32
"""Frames waiting for the encoder at most (the UI drops frames rather than wait)."""


class ScreenRecorder:
    """Appends frames at a fixed rate while recording; encoding runs on its own thread."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._tmp: Path | None = None
        self.fps = 30
        self.frames = 0
        """Frames handed to the encoder."""
        self.dropped = 0
        self._next = 0.0
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: Exception | None = None

    @property
    def recording(self) -> bool:
        return self._thread is not None

    def start(self, path: str | Path, fps: int = 30) -> None:
        from core.imaging import Mp4Writer
        self.path, self.fps, self.frames, self.dropped, self._next = Path(path), int(fps), 0, 0, 0.0
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"recording file {self.path} must end in .mp4")
        self._tmp = self.path.with_name(f".{self.path.stem}.recording.mp4")
        writer = Mp4Writer(self._tmp, fps=self.fps, bitrate=None, quality=8)
        self._queue, self._error = queue.Queue(QUEUE_FRAMES), None
        self._thread = threading.Thread(target=self._encode, args=(writer, self._queue), name="recorder",
                                        daemon=True)
        self._thread.start()

    def _encode(self, writer, frames: queue.Queue) -> None:
        try:
            while (pixels := frames.get()) is not None:
                writer.append(pixels)
        except Exception as e:  # reported by stop(); the queue is drained so the UI never blocks
            self._error = e
            while frames.get() is not None:
                pass
        finally:
            try:
                writer.close()
            except Exception as e:
                self._error = self._error or e

    def due(self) -> bool:
        """True when the next frame should be captured (keeps the video's playback speed real)."""
        return self.recording and time.monotonic() >= self._next

    def add(self, pixels: np.ndarray) -> None:
        try:
            self._queue.put_nowait(pixels)
            self.frames += 1
        except queue.Full:
            self.dropped += 1
        self._next = max(self._next + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)

    def stop(self, keep: bool = True) -> Path | None:
        """Finish the file and move it into place, or (keep=False, or no frames) discard it."""
        if self._thread is None:
            return None
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            self._tmp.unlink(missing_ok=True)
            raise RuntimeError(f"encoding {self.path} failed: {self._error}")
        if keep and self.frames:
            os.replace(self._tmp, self.path)
            return self.path
        self._tmp.unlink(missing_ok=True)
        return None


class Recording:
    """The studio side of AppState.recording: the handlers of Start/StopRecording, and each frame the
    viewport's view for the recorder (UI thread, GL)."""

    def __init__(self) -> None:
        self.recorder = ScreenRecorder()

    @property
    def recording(self) -> bool:
        return self.recorder.recording

    def start(self, state: AppState, path: str) -> None:
        r = state.recording
        if self.recorder.recording:
            return
        r.path = path
        try:
            self.recorder.start(path, r.fps)
            state.set_status(f"recording the viewport to {path}")
        except (OSError, RuntimeError, ValueError) as e:
            state.set_status(f"cannot record to {path}: {e}", error=True)
        r.active, r.frames = self.recorder.recording, 0

    def stop(self, state: AppState) -> None:
        if not self.recorder.recording:
            return
        try:
            path = self.recorder.stop()
            state.set_status(f"saved recording to {path}" if path else "recording discarded (no frames)")
        except (OSError, RuntimeError) as e:
            state.set_status(f"recording failed: {e}", error=True)
        state.recording.active = False

    def update(self, state: AppState, display) -> None:
        """Feed the recorder the viewport's view when a frame is due."""
        r, rec = state.recording, self.recorder
        if rec.due() and display.frame is not None:
            size = r.size or display.native_size(state.view)
            size = max(16, size - size % 16)
            rec.add(display.render_view(state.view, size))
        r.active, r.frames = rec.recording, rec.frames

    def close(self) -> None:
        if self.recorder.recording:
            self.recorder.stop()
