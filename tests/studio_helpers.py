"""Waiting for frames and comparing pictures: shared by the studio tests."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def load(path: Path) -> np.ndarray:
    """PNG -> [H, W, 3] int16 (room for differences)."""
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def assert_same_picture(shown: np.ndarray, reference: np.ndarray, what: str, tolerance: float = 1.0) -> None:
    """Equal up to `tolerance` levels per pixel, and clearly not a flip or mirror of the reference.

    Lossy videos pass a larger `tolerance`; the flip/mirror check compares mean differences, so it
    holds for them too."""
    assert shown.shape == reference.shape, f"{what}: {shown.shape} vs {reference.shape}"
    diff = np.abs(shown - reference)
    for name, other in (("upside down", reference[::-1]), ("mirrored", reference[:, ::-1])):
        assert np.abs(shown - other).mean() > 4 * max(diff.mean(), 0.1), f"{what} looks {name}"
    assert diff.max() <= tolerance, f"{what}: max difference {diff.max()} (mean {diff.mean():.3f})"


def run_until(studio, condition, what: str, limit: float) -> None:
    """Step UI frames until condition() holds; fails after `limit` seconds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"gave up waiting for {what}"
        studio.step()


def settle(studio, limit: float) -> np.ndarray:
    """The viewport's pixels once the progressive refinement has finished, int16."""
    run_until(studio, lambda: studio.settled, "the final frame", limit)
    return studio.capture_viewport().astype(np.int16)


def xdo(studio, *args) -> None:
    """Run xdotool against the X server ('WINDOW' stands for the studio's X window id)."""
    import os
    import subprocess

    import glfw
    window = str(glfw.get_x11_window(studio.window.handle))
    argv = [str(a).replace("WINDOW", window) for a in args]
    subprocess.run(["xdotool", *argv], check=True, env=dict(os.environ), timeout=30)


def click(studio, x: float, y: float, button: int = 1, frames: int = 3) -> None:
    """Move the pointer to window coordinates (x, y) and click there, through the X server."""
    xdo(studio, "mousemove", "--window", "WINDOW", int(x), int(y))
    for _ in range(frames):
        studio.step()
    xdo(studio, "click", button)
    for _ in range(frames):
        studio.step()


def centre_of(rect: tuple[float, float, float, float]) -> tuple[float, float]:
    x0, y0, x1, y1 = rect
    return (x0 + x1) / 2, (y0 + y1) / 2
