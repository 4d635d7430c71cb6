"""The studio as a person uses it, through the X server (xdotool -> Xvfb -> GLFW): typing into text
fields, the render panel's split line and probe, the Model panel's errors, files and dialogs.

What is checked is what the window draws: the text an ImGui field returned in a frame that was drawn,
item rectangles, pixels read back from the window.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import glfw
import numpy as np
import pytest
import studio_helpers
from studio_helpers import centre_of, click, xdo

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 90
MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"


@pytest.fixture(scope="module")
def studio(display, tmp_path_factory):
    if shutil.which("xdotool") is None:
        pytest.fail("xdotool is not installed (apt-get install xdotool)")
    from app.studio import Studio
    s = Studio(str(MODEL), settings_dir=tmp_path_factory.mktemp("settings"), window_size=(1000, 640))
    yield s
    s.close()
    assert [p.last_error for p in s.panels if p.last_error] == []


def panel(studio, name: str):
    return next(p for p in studio.panels if p.name == name)


def show(studio, name: str):
    """Bring a panel's tab to the front and draw a few frames."""
    p = panel(studio, name)
    p.open = p.focus = True
    for _ in range(3):
        studio.step()
    return p


def run_real_loop_until(studio, stop) -> list[tuple[float, object]]:
    """Run Studio.run (the idle-waiting loop a user gets) until stop() holds, checked from a thread that
    closes the window; returns (time, what the last drawn frame showed) per frame via `record`."""
    done = threading.Event()

    def watcher():
        while not stop():
            time.sleep(0.01)
        glfw.set_window_should_close(studio.window.handle, True)
        glfw.post_empty_event()
        done.set()
    threading.Thread(target=watcher, daemon=True).start()
    studio.run()
    done.wait(5)
    glfw.set_window_should_close(studio.window.handle, False)


def test_typed_path_shows_within_a_second_and_enter_opens_it(studio, tmp_path):
    """A 45-character path typed with xdotool is in the field (as drawn) within 1 s of the last key, while
    the studio idles between events; Enter right after it opens the image (its pixels are drawn)."""
    from PIL import Image
    studio_helpers.settle(studio, WAIT_S)
    folder = Path(tempfile.mkdtemp(prefix="ts", dir="/tmp"))
    try:
        path = str(folder / ("t" * (45 - len(str(folder)) - 5) + ".png"))
        assert len(path) == 45
        Image.fromarray(np.full((40, 40, 3), (200, 40, 90), np.uint8)).save(path)
        invert = show(studio, "Invert")
        click(studio, *centre_of(invert.item_rects["image"]))
        drawn: list[tuple[float, str]] = []
        step = studio.step

        def recording_step():
            step()
            drawn.append((time.monotonic(), invert.path_text))
        typed: dict[str, float] = {}

        def type_it():
            xdo(studio, "type", "--delay", "12", path)
            typed["end"] = time.monotonic()
            xdo(studio, "key", "Return")
        threading.Thread(target=type_it, daemon=True).start()
        studio.step = recording_step
        try:
            run_real_loop_until(studio, lambda: "end" in typed and time.monotonic() > typed["end"] + 1.5)
        finally:
            del studio.step
        shown = [t for t, text in drawn if text == path]
        assert shown, f"the field never showed the path; last frames: {[text for _, text in drawn[-3:]]}"
        assert shown[0] - typed["end"] <= 1.0, f"the path was drawn {shown[0] - typed['end']:.2f} s after typing"
        studio_helpers.run_until(studio, lambda: "target" in invert.item_rects
                                 and studio.state.invert.image == path, "the opened image", WAIT_S)
        studio.step()
        x0, y0, x1, y1 = (round(v) for v in invert.item_rects["target"])
        pixels = studio.read_window()[y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3).astype(int)
        assert np.abs(pixels - (200, 40, 90)).max() <= 2, "the opened image is not what the panel shows"
    finally:
        shutil.rmtree(folder)
