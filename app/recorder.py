"""Screen recording of the viewport to MP4 (imageio-ffmpeg, H.264).

Frames go to a temporary file beside the target, renamed into place when recording stops, so an
interrupted recording never leaves a broken MP4 under the chosen name.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


class ScreenRecorder:
    """Appends frames at a fixed rate while recording."""

    def __init__(self) -> None:
        self._writer = None
        self.path: Path | None = None
        self._tmp: Path | None = None
        self.fps = 30
        self.frames = 0
        self._next = 0.0

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def start(self, path: str | Path, fps: int = 30) -> None:
        from core.imaging import Mp4Writer
        self.path, self.fps, self.frames, self._next = Path(path), int(fps), 0, 0.0
        self._tmp = self.path.with_name(f".{self.path.stem}.recording.mp4")
        self._writer = Mp4Writer(self._tmp, fps=self.fps, bitrate=None, quality=8)

    def due(self) -> bool:
        """True when the next frame should be captured (keeps the video's playback speed real)."""
        return self.recording and time.monotonic() >= self._next

    def add(self, pixels: np.ndarray) -> None:
        self._writer.append(pixels)
        self.frames += 1
        self._next = max(self._next + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)

    def stop(self, keep: bool = True) -> Path | None:
        """Finish the file and move it into place, or (keep=False, or no frames) discard it."""
        if self._writer is None:
            return None
        writer, self._writer = self._writer, None
        writer.close()
        if keep and self.frames:
            os.replace(self._tmp, self.path)
            return self.path
        self._tmp.unlink(missing_ok=True)
        return None
