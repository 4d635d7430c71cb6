"""The studio driven through the X server (xdotool -> Xvfb -> GLFW events), pixels read back.

Each gesture is checked twice: the picture read back from the window equals the engine's render of
the camera the gesture should give (computed here from the drag distance, independently of the
viewport code), and the content moved the way the hand did (orbit/pan direction, dolly size).
The default model (32 px neural, 128 px SR) keeps renders cheap.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import studio_helpers
from studio_helpers import xdo

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 90
MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"  # tests/data/README.md: why not the default model


@pytest.fixture(scope="module")
def studio(display, tmp_path_factory):
    if shutil.which("xdotool") is None:
        pytest.fail("xdotool is not installed (apt-get install xdotool)")
    from app.studio import Studio
    s = Studio(str(MODEL), settings_dir=tmp_path_factory.mktemp("settings"),
               window_size=(1000, 640))
    s.state.view.pixel_exact, s.state.view.probe = True, False    # 1:1, no tooltip over the picture
    yield s
    s.close()
    assert [p.last_error for p in s.panels if p.last_error] == []


def pump(studio, frames: int = 3) -> None:
    for _ in range(frames):
        studio.step()


def settle(studio) -> np.ndarray:
    return studio_helpers.settle(studio, WAIT_S)


def centre(studio) -> tuple[int, int]:
    x, y, side = studio.viewport.image_rect
    return int(x + side / 2), int(y + side / 2)


def drag(studio, button: int, dx: int, dy: int) -> None:
    """Press at the image centre, move by (dx, dy) in one motion, release: all through the X server."""
    x, y = centre(studio)
    xdo(studio, "mousemove", "--window", "WINDOW", x, y)
    pump(studio)
    xdo(studio, "mousedown", button)
    pump(studio)
    xdo(studio, "mousemove", "--window", "WINDOW", x + dx, y + dy)
    pump(studio)
    xdo(studio, "mouseup", button)
    pump(studio)


def expected_view(studio, camera) -> np.ndarray:
    """The engine's SR image for the studio's state with `camera` (what the viewport must show)."""

    from app.state import final_request
    from core.imaging import to_uint8
    request = dataclasses.replace(final_request(studio.state), camera=tuple(camera.label()[0].tolist()))
    frame = studio.engine.render(request)
    assert frame.error is None, frame.error
    return to_uint8(frame.image).astype(np.int16)


def shift_between(before: np.ndarray, after: np.ndarray, reach: int = 24) -> np.ndarray:
    """(dx, dy) in pixels that best maps `before` onto `after` (brute-force search, mean abs diff)."""
    a, b = before.mean(-1), after.mean(-1)
    n, best = a.shape[0], (np.inf, 0, 0)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            src = a[max(0, -dy):n - max(0, dy), max(0, -dx):n - max(0, dx)]
            dst = b[max(0, dy):n - max(0, -dy), max(0, dx):n - max(0, -dx)]
            best = min(best, (float(np.abs(src - dst).mean()), dx, dy))
    return np.array(best[1:], float)


def covered(studio) -> int:
    """Texels the subject covers in the frame on screen (opacity > 0.5)."""
    return int((studio.latest_frame.opacity > 0.5).sum())


@pytest.mark.parametrize("mode", ["image", "image_raw", "image_depth"])
def test_viewport_equals_render_for_every_view(studio, tmp_path, mode):
    """The start view of `main.py CHECKPOINT --seed 3 --yaw 30 --pitch 10 --psi 0.7 --mode M` shows
    render's PNG for the same arguments, pixel for pixel (read back from the window)."""
    from studio_helpers import assert_same_picture, load

    from app.state import StartView
    from core.checkpoint import load_generator
    from core.images import View, export_stills
    settle(studio)                                    # the model is loaded (it resets the camera)
    s = studio.state
    saved = (dataclasses.replace(s.camera), dataclasses.replace(s.view), s.latent.seed, s.latent.psi)
    G = load_generator(MODEL, "cpu")
    export_stills(G, [3], [View(math.radians(30), math.radians(10))], tmp_path, [mode], psi=0.7, sheet=False)
    StartView(seed=3, yaw_deg=30, pitch_deg=10, psi=0.7, mode=mode).apply(
        s, s.model.options)
    try:
        shown = settle(studio)
        assert_same_picture(shown, load(tmp_path / f"seed0003_yaw+30_pitch+10_{mode}.png"), f"viewport ({mode})")
    finally:
        s.camera, s.view, s.latent.seed, s.latent.psi = saved


@pytest.mark.parametrize("mask", [True, False])
def test_depth_view_masks_the_background_as_render_does(studio, tmp_path, mask):
    """The depth view at yaw 35 (white background: empty rays have arbitrary depth) with the Render
    panel's "mask background" on and off equals render's depth PNG with --depth-mask / --no-depth-mask;
    masked, the auto range (and colour bar) spans the foreground only and the background is black."""
    from studio_helpers import assert_same_picture, load

    from app.state import StartView
    from core.checkpoint import load_generator
    from core.images import View, export_stills
    settle(studio)
    s = studio.state
    saved = (dataclasses.replace(s.camera), dataclasses.replace(s.view), s.latent.seed, s.latent.psi)
    G = load_generator(MODEL, "cpu")
    export_stills(G, [1], [View(math.radians(35), 0.0)], tmp_path, ["image_depth"], psi=0.7, sheet=False,
                  depth_mask=mask)
    StartView(seed=1, yaw_deg=35, pitch_deg=0, psi=0.7, mode="image_depth").apply(
        s, s.model.options)
    s.view.depth_mask = mask
    try:
        shown = settle(studio)
        assert_same_picture(shown, load(tmp_path / "seed0001_yaw+35_pitch+0_image_depth.png"),
                            f"depth view (mask {mask})")
        frame = studio.latest_frame
        fg = (frame.opacity[0] >= 0.5).numpy()
        depth = frame.depth[0].numpy()
        lo, hi = studio.viewport.display.shown_depth_range(s.view)
        expected = (depth[fg].min(), depth[fg].max()) if mask else (depth.min(), depth.max())
        assert (lo, hi) == pytest.approx(expected)
        assert (shown[~fg] == 0).all() == mask     # unmasked, the background shows its junk depth
    finally:
        s.camera, s.view, s.latent.seed, s.latent.psi = saved


def test_left_drag_orbits_with_the_hand(studio):
    before = settle(studio)
    side = studio.viewport.image_rect[2]
    cam0 = dataclasses.replace(studio.state.camera)
    drag(studio, 1, 24, 0)
    after = settle(studio)
    turned = dataclasses.replace(cam0)
    turned.orbit(-math.pi * 24 / side, 0.0)      # half a turn per image width, object follows the hand
    other_way = dataclasses.replace(cam0)
    other_way.orbit(math.pi * 24 / side, 0.0)
    expected, wrong = expected_view(studio, turned), expected_view(studio, other_way)
    assert np.abs(after - before).mean() > 1, "the drag did not change the picture"
    assert np.abs(after - expected).max() <= 1, "viewport differs from the render of the orbited camera"
    assert np.abs(after - wrong).mean() > 2 * np.abs(after - expected).mean() + 0.5


def test_right_drag_pans_so_the_subject_follows_the_cursor(studio):
    before = settle(studio)
    cam0 = dataclasses.replace(studio.state.camera)
    drag(studio, 3, 14, 10)                       # right and down
    after = settle(studio)
    moved = shift_between(before, after)
    assert moved[0] > 14 * 0.8 and moved[1] > 10 * 0.8, f"subject moved by {moved}, the cursor by (14, 10)"
    assert moved[0] < 14 * 1.2 and moved[1] < 10 * 1.2, f"subject moved by {moved}, the cursor by (14, 10)"
    assert studio.state.camera.pivot != cam0.pivot
    assert np.abs(after - expected_view(studio, studio.state.camera)).max() <= 1


def test_wheel_dollies_towards_the_subject(studio):
    settle(studio)
    area, radius = covered(studio), studio.state.camera.radius
    x, y = centre(studio)
    xdo(studio, "mousemove", "--window", "WINDOW", x, y)
    pump(studio)
    xdo(studio, "click", 4)                       # wheel up: closer
    pump(studio)
    after = settle(studio)
    assert studio.state.camera.radius == pytest.approx(radius * math.exp(-0.1))
    assert covered(studio) > 1.1 * area, "the subject did not grow"
    assert np.abs(after - expected_view(studio, studio.state.camera)).max() <= 1


def test_clicking_a_render_mode_changes_the_picture(studio):
    settle(studio)
    panel = next(p for p in studio.panels if p.name == "Render")
    panel.focus = True
    pump(studio)
    x0, y0, x1, y1 = panel.item_rects["mode:raw"]
    xdo(studio, "mousemove", "--window", "WINDOW", int(x0 + 6), int((y0 + y1) / 2))
    pump(studio)
    xdo(studio, "click", 1)
    pump(studio)
    assert studio.state.view.mode == "raw"
    shown = settle(studio)
    raw = studio.latest_frame.image_raw
    from core.imaging import to_uint8
    assert shown.shape[0] == raw.shape[-1] == 32
    assert np.abs(shown - to_uint8(raw).astype(np.int16)).max() <= 1
    studio.state.view.mode = "image"


def test_pixel_probe_reports_the_texel_under_the_cursor(studio):
    settle(studio)
    studio.state.view.probe = True
    try:
        x, y, side = studio.viewport.image_rect
        xdo(studio, "mousemove", "--window", "WINDOW", int(x + side * 0.5), int(y + side * 0.25))
        pump(studio, 4)
        probe = studio.viewport.last_probe
        frame = studio.latest_frame
        n = frame.depth.shape[-1]
        assert probe["depth"] == pytest.approx(float(frame.depth[0, n // 4, n // 2]))
        assert probe["opacity"] == pytest.approx(float(frame.opacity[0, n // 4, n // 2]))
    finally:
        studio.state.view.probe = False
        xdo(studio, "mousemove", "--window", "WINDOW", 2, 2)
        pump(studio)
