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
    s = Studio(str(MODEL), settings_dir=tmp_path_factory.mktemp("settings"), window_size=(1000, 640),
               output_dir=tmp_path_factory.mktemp("out") / "TriplaneStudio")
    studio_helpers.settle(s, WAIT_S)              # loaded, and the new layout's first tabs in front
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
        xdo(studio, "mousemove", "--window", "WINDOW", 2, 2)    # no tooltip of the field over the image
        for _ in range(3):
            studio.step()
        x0, y0, x1, y1 = (round(v) for v in invert.item_rects["target"])
        pixels = studio.read_window()[y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3).astype(int)
        assert np.abs(pixels - (200, 40, 90)).max() <= 2, "the opened image is not what the panel shows"
    finally:
        shutil.rmtree(folder)


def drawn_rect(drawn, window: str, kind: str, label: str) -> tuple[float, float, float, float]:
    """Where ImGui last drew a widget (DrawnItems record); it must be inside the visible area."""
    found = [it for it in drawn.items if it["window"] == window and it["kind"] == kind and it["label"] == label]
    assert found, f"no {kind} {label!r} drawn in {window}"
    rect, clip = found[-1]["rect"], found[-1]["clip"]
    assert clip[1] <= rect[1] and rect[3] <= clip[3], f"{kind} {label!r} is scrolled out of {window}'s view"
    return rect


def open_latent_files(studio):
    """The Latent panel in front with only its 'Save / load' section open; returns what was drawn."""
    from studio_helpers import DrawnItems
    show(studio, "Latent")
    with DrawnItems(expand=False) as drawn:
        studio.step()
    if not [it for it in drawn.items if it["window"] == "Latent" and it["label"] == "Save"]:
        click(studio, *centre_of(drawn_rect(drawn, "Latent", "collapsing_header", "Save / load")))
    with DrawnItems(expand=False) as drawn:
        for _ in range(2):
            studio.step()
    return drawn


def test_dragging_the_split_line_moves_it_and_leaves_the_camera(studio):
    """Raw | SR split view: a drag that starts on the dividing line moves the line (left of it the raw
    image, right of it the SR image as before) and does not orbit (the SR side is unchanged)."""
    from studio_helpers import settle
    v = studio.state.view
    v.mode, v.split, v.split_pos, v.pixel_exact = "image", True, 1.0, True
    try:
        all_raw = settle(studio, WAIT_S)
        v.split_pos = 0.5
        before = settle(studio, WAIT_S)
        x, y, side = studio.viewport.image_rect
        line, to = int(x + side * 0.5), int(x + side * 0.75)
        xdo(studio, "mousemove", "--window", "WINDOW", line, int(y + side * 0.5))
        for _ in range(3):
            studio.step()
        xdo(studio, "mousedown", 1)
        studio.step()
        xdo(studio, "mousemove", "--window", "WINDOW", to, int(y + side * 0.5))
        for _ in range(3):
            studio.step()
        xdo(studio, "mouseup", 1)
        after = settle(studio, WAIT_S)
        n = int(side)
        left, right = slice(0, int(n * 0.75) - 2), slice(int(n * 0.75) + 2, n)
        assert np.abs(after[:, right] - before[:, right]).max() <= 1, "the SR side changed: the drag orbited"
        assert np.abs(after[:, left] - all_raw[:, left]).max() <= 1, "left of the line is not the raw image"
        band = slice(int(n * 0.5) + 2, int(n * 0.75) - 2)
        assert np.abs(after[:, band] - before[:, band]).mean() > 1, "the line did not move"
    finally:
        v.split, v.split_pos = False, 0.5


def test_pixel_probe_is_off_at_start_and_nothing_covers_the_picture(studio):
    """With the pointer resting on the image, the view shows the picture, not a probe tooltip over it
    (the probe, switched on, does cover it: the check can fail)."""
    from studio_helpers import settle
    studio.state.view.mode, studio.state.view.pixel_exact = "image", False
    away = settle(studio, WAIT_S)
    x, y, side = studio.viewport.image_rect
    xdo(studio, "mousemove", "--window", "WINDOW", int(x + side * 0.4), int(y + side * 0.4))
    for _ in range(4):
        studio.step()
    hovered = studio.capture_viewport().astype(np.int16)
    assert np.abs(hovered - away).max() <= 1, "something is drawn over the picture where the pointer rests"
    studio.state.view.probe = True
    try:
        for _ in range(4):
            studio.step()
        probed = studio.capture_viewport().astype(np.int16)
        assert np.abs(probed - away).max() > 50, "the probe tooltip did not show"
    finally:
        studio.state.view.probe = False
        xdo(studio, "mousemove", "--window", "WINDOW", 2, 2)
        studio.step()


def numbers(text: str) -> list[float]:
    import re
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def test_near_far_fields_show_the_colour_bars_range(studio):
    """Depth view: the near/far fields show the numbers the colour bar under the view shows, with the
    automatic range and after 'auto range' is clicked off (the range then stays where it was)."""
    from studio_helpers import DrawnItems, settle
    studio.state.view.mode = "depth"
    show(studio, "Render")
    try:
        settle(studio, WAIT_S)
        for auto in (True, False):
            with DrawnItems(expand=False) as drawn:
                for _ in range(3):
                    studio.step()
            fields = [it for it in drawn.items if it["window"] == "Render" and it["label"] == "near/far"]
            bars = [it["label"] for it in drawn.items if it["window"] == "Viewport" and "depth in scene units"
                    in it["label"]]
            assert fields and bars
            shown = numbers(fields[-1]["shown"])
            assert shown == numbers(bars[-1])[:2], f"fields {shown}, colour bar {bars[-1]!r} (auto {auto})"
            assert studio.state.view.depth_auto == auto
            if auto:
                click(studio, *centre_of(drawn_rect(drawn, "Render", "checkbox", "auto range")))
                settle(studio, WAIT_S)
        assert shown != [2.25, 3.3]
    finally:
        studio.state.view.mode, studio.state.view.depth_auto = "image", True


def test_failed_open_shows_its_error_under_the_path_and_the_loaded_model_in_it(studio, tmp_path):
    """A path typed into the Model panel that cannot be opened: the reason is drawn right under the path
    field, and the field goes back to the model still on screen."""
    from studio_helpers import DrawnItems, run_until
    studio_helpers.settle(studio, WAIT_S)
    loaded = studio.state.model.path
    model = show(studio, "Model")
    click(studio, *centre_of(model.item_rects["path"]))
    xdo(studio, "key", "ctrl+a")
    xdo(studio, "type", "--delay", "12", str(tmp_path / "missing.pkl"))
    xdo(studio, "key", "Return")
    run_until(studio, lambda: studio.state.model.error, "the failed open", WAIT_S)
    with DrawnItems(expand=False) as drawn:
        for _ in range(3):
            studio.step()
    errors = [it for it in drawn.items if it["window"] == "Model" and "missing.pkl" in it["label"]]
    assert errors, "no error drawn in the Model panel"
    x0, y0, x1, y1 = errors[-1]["rect"]
    fx0, fy0, fx1, fy1 = model.item_rects["path"]
    assert 0 <= y0 - fy1 <= 10 and abs(x0 - fx0) <= 1, "the error is not right under the path field"
    assert "no such file" in errors[-1]["label"]
    assert model.file.text == loaded == studio.state.model.path


def test_relative_names_save_in_the_output_folder(studio, tmp_path, monkeypatch):
    """The Latent panel's default name saves into the per-user output folder, not the launch folder."""
    from studio_helpers import run_until
    monkeypatch.chdir(tmp_path)
    studio_helpers.settle(studio, WAIT_S)
    drawn = open_latent_files(studio)
    click(studio, *centre_of(drawn_rect(drawn, "Latent", "button", "Save")))
    target = Path(studio.state.output_dir) / "latent.npz"
    run_until(studio, lambda: target.exists(), "the saved latent", WAIT_S)
    assert not (tmp_path / "latent.npz").exists()
    with np.load(target) as data:
        assert data["ws"].shape[1] == studio.state.model.num_ws


def fake_dialog_program(folder: Path, answer: Path) -> None:
    """A 'zenity' that answers every file dialog with `answer` (portable-file-dialogs runs it)."""
    script = folder / "zenity"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {folder / 'calls.txt'}\necho {answer}\n")
    script.chmod(0o755)


def test_file_dialog_fills_the_field_and_save_uses_it(studio, tmp_path, monkeypatch):
    """With a dialog program present, the field's "..." opens the dialog (here a stand-in zenity); its
    answer is drawn in the field and Save writes there."""
    from studio_helpers import run_until
    bin_dir, chosen = tmp_path / "bin", tmp_path / "picked" / "mine.npz"
    bin_dir.mkdir()
    chosen.parent.mkdir()
    fake_dialog_program(bin_dir, chosen)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    studio_helpers.settle(studio, WAIT_S)
    latent = panel(studio, "Latent")
    drawn = open_latent_files(studio)
    click(studio, *centre_of(drawn_rect(drawn, "Latent", "button", "...##.npz file")))
    run_until(studio, lambda: latent.file.text == str(chosen), "the dialog's answer in the field", WAIT_S)
    assert "--file-selection" in (bin_dir / "calls.txt").read_text()
    drawn = open_latent_files(studio)
    click(studio, *centre_of(drawn_rect(drawn, "Latent", "button", "Save")))
    run_until(studio, lambda: chosen.exists(), "the latent saved where the dialog said", WAIT_S)


def test_without_a_dialog_program_the_field_is_text_only(studio, tmp_path, monkeypatch):
    """No zenity/kdialog/... (as under Xvfb in CI): no "..." button, the text field takes its room."""
    monkeypatch.setenv("PATH", str(tmp_path))
    drawn = open_latent_files(studio)
    latent = [it for it in drawn.items if it["window"] == "Latent"]
    assert not [it for it in latent if it["label"].startswith("...")]
    field = [it for it in latent if it["kind"] == "input_text" and it["label"] == "##.npz file"][-1]
    label = [it for it in latent if it["kind"] == "text" and it["label"] == ".npz file"][-1]
    assert 0 < label["rect"][0] - field["rect"][2] <= 8, "the field does not reach its label"


def test_a_typed_out_of_range_yaw_is_kept_in_range(studio):
    """Ctrl+click the Camera panel's yaw and type 1570: the field shows 180 deg (its end; yaw wraps to
    -180) and the view is the one from behind, not from 1570 deg."""
    import dataclasses
    import math

    from studio_helpers import DrawnItems, settle

    from app.state import final_request
    from core.imaging import to_uint8
    studio.state.view.mode = "image"
    camera = show(studio, "Camera")
    settle(studio, WAIT_S)
    with DrawnItems() as drawn:
        studio.step()
    x, y = centre_of(drawn_rect(drawn, "Camera", "drag_float", "yaw"))
    xdo(studio, "mousemove", "--window", "WINDOW", int(x) - 40, int(y))
    for _ in range(3):
        studio.step()
    xdo(studio, "keydown", "ctrl", "click", "1", "keyup", "ctrl")
    for _ in range(3):
        studio.step()
    xdo(studio, "key", "ctrl+a", "type", "1570")
    xdo(studio, "key", "Return")
    for _ in range(3):
        studio.step()
    with DrawnItems() as drawn:
        studio.step()
    shown = [it["shown"] for it in drawn.items if it["window"] == camera.name and it["label"] == "yaw"][-1]
    assert shown in ("180.0 deg", "-180.0 deg"), shown
    behind = dataclasses.replace(studio.state.camera, yaw=math.pi)
    request = dataclasses.replace(final_request(studio.state), camera=tuple(behind.label()[0].tolist()))
    expected = to_uint8(studio.engine.render(request).image).astype(np.int16)
    studio.state.view.pixel_exact = True
    try:
        assert np.abs(settle(studio, WAIT_S) - expected).max() <= 1, "the view is not the one from behind"
    finally:
        studio.state.view.pixel_exact = False
        studio.state.camera.yaw = 0.0
