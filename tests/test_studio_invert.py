"""The Invert panel in a running studio (default model, Xvfb, pixels read back from GL): invert a
rendered target with the camera given, watch it improve, see the result in the viewport exactly as
`render --latent` draws it, save latent and tuned checkpoint, go back to the seeds unchanged; stop a
run midway and keep its best result; unreadable images are one log line. Few steps: the model is tiny
and the machine shared, so quality is checked relative to the inversion's own start."""
from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import studio_helpers
import torch
from studio_helpers import assert_same_picture, load, quick_search, xdo

from app.actions import CancelInvertCamera, OpenInvertImage, OpenModel, SaveWindowPNG

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"  # tests/data/README.md: why not the default model
WAIT_S = 240


@pytest.fixture(scope="module")
def G():
    from core.checkpoint import load_generator
    return load_generator(MODEL, "cpu")


@pytest.fixture(scope="module")
def target(G, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Seed 3 rendered at yaw +25 (render's meaning), as a PNG and as uint8 pixels."""
    from core.cameras import frontal_label
    from core.images import seed_ws
    from core.imaging import save_png, to_uint8
    with torch.no_grad():
        image = G.synthesis(seed_ws(G, 3), frontal_label(G.options, None, yaw=math.radians(25)))["image"]
    pixels = to_uint8(image[0].clamp(-1, 1))
    return save_png(tmp_path_factory.mktemp("target") / "target.png", pixels), pixels.astype(np.int16)


@pytest.fixture(scope="module")
def studio(display, tmp_path_factory):
    from app.studio import Studio
    s = Studio(str(MODEL), settings_dir=tmp_path_factory.mktemp("settings"), window_size=(1200, 800))
    s.state.view.pixel_exact, s.state.view.probe = True, False   # the 128 px frame 1:1, no tooltip
    s.invert_panel.focus = True
    yield s
    s.close()
    assert [p.last_error for p in s.panels if p.last_error] == []


def run_until(studio, condition, what: str, limit: float = WAIT_S) -> None:
    studio_helpers.run_until(studio, condition, what, limit)


def settle(studio) -> np.ndarray:
    return studio_helpers.settle(studio, WAIT_S)


def look_from(studio, yaw_deg: float) -> None:
    from app.state import StartView
    run_until(studio, lambda: studio.state.model.path is not None, "the model")
    StartView(yaw_deg=yaw_deg, pitch_deg=0.0).apply(studio.state, studio.state.model.options)


def invert(studio, wait_for=None) -> dict:
    """Start from the panel; wait_for(state) -> True stops the run early."""
    s, panel = studio.state, studio.invert_panel
    panel.start(s)
    run_until(studio, lambda: s.invert.running, "the inversion to start")
    if wait_for is not None:
        run_until(studio, lambda: wait_for(s), "the inversion's first steps")
        panel.stop(s)
    run_until(studio, lambda: not s.invert.running, "the inversion to finish")
    assert s.invert.result is not None, s.status
    return s.invert.result


def save(studio, what: str) -> None:
    studio.invert_panel.save(studio.state, what)
    run_until(studio, lambda: not studio.session.busy, f"saving the {what}")
    assert studio.state.status.startswith(f"saved {what}"), studio.state.status


def test_invert_given_camera_then_orbit_save_and_back_to_seeds(studio, G, target, tmp_path):
    from core.checkpoint import load_generator
    from core.latents import load_latent
    s, panel = studio.state, studio.invert_panel
    look_from(studio, 25)
    seeds_view = settle(studio)
    png, goal = target
    studio.window.dropped.append(str(png))      # a dropped image goes to the Invert panel, not the Model one
    run_until(studio, lambda: s.invert.target is not None, "the prepared target")
    assert panel.path_text == str(png) and s.model.path == str(MODEL)
    assert s.model.loading is None and not s.model.error, "the image was opened as a model"
    np.testing.assert_array_equal(s.invert.target, goal)   # 128 px already: no crop or resize
    panel.camera, panel.yaw_deg, panel.pitch_deg = 1, 25.0, 0.0   # yaw/pitch
    panel.steps, panel.tune_steps = 20, 1
    result = invert(studio)
    assert not result["interrupted"] and result["tuned"] and abs(result["yaw_deg"] - 25) < 1e-3
    assert s.invert.target is not None and s.invert.preview is not None, "no live reconstruction shown"
    assert "read 128x128 RGB" in s.invert.target_info and "pixel MSE only" in s.invert.loss_name
    w_losses = [loss for phase, loss in s.invert.losses if phase == "w"]
    assert len(w_losses) == 20 and min(w_losses[-5:]) < 0.7 * w_losses[0], w_losses   # seeded: reproducible

    shown = settle(studio)
    assert s.latent.source == result["name"]
    with torch.no_grad():   # the projection's start: the mean w for the target's camera
        from core.cameras import frontal_label
        c = frontal_label(G.options, None, yaw=math.radians(25))
        z = torch.randn(2000, G.z_dim, generator=torch.Generator().manual_seed(0))
        w_avg = G.mapping(z, c.expand(2000, -1)).mean(0, keepdim=True)
        start = ((G.synthesis(w_avg, c)["image"][0].clamp(-1, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
                 .permute(1, 2, 0).numpy().astype(np.int16))
    assert np.abs(shown - goal).mean() < np.abs(start - goal).mean(), "the result is no closer than the start"
    studio.state.actions.append(SaveWindowPNG(str(tmp_path / "invert_panel.png")))   # the panel after a run
    studio.step()
    assert load(tmp_path / "invert_panel.png").std() > 10

    panel.latent_file.text, panel.tuned_file.text = str(tmp_path / "latent.npz"), str(tmp_path / "tuned.ckpt")
    save(studio, "latent")
    save(studio, "tuned")
    latent = load_latent(tmp_path / "latent.npz")
    assert latent.ws.shape == (1, G.num_ws, G.w_dim) and latent.noise
    assert latent.settings["camera"] == "given" and latent.settings["tune"] == 1
    assert torch.allclose(latent.camera, frontal_label(G.options, None, yaw=math.radians(25))[0])
    assert load_generator(tmp_path / "tuned.ckpt", "cpu").num_ws == G.num_ws
    r = subprocess.run([sys.executable, "main.py", "render", str(tmp_path / "tuned.ckpt"), "--latent",
                        str(tmp_path / "latent.npz"), "--yaw", "25", "--out", str(tmp_path / "r"), "--device",
                        "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert_same_picture(shown, load(tmp_path / "r" / "latent_yaw+25_pitch+0_image.png"), "inverted viewport")

    s.latent.source = None                      # the Latent panel's "Back to seeds"
    assert np.array_equal(settle(studio), seeds_view), "the seeds no longer render as before the inversion"


def test_stop_midway_keeps_the_best_result(studio, G, target, tmp_path):
    from core.images import View, export_stills
    from core.latents import apply_latent, load_latent
    s, panel = studio.state, studio.invert_panel
    look_from(studio, -20)
    seeds_view = settle(studio)
    panel.path_text, panel.camera, panel.steps, panel.tune_steps = str(target[0]), 0, 500, 5   # viewport camera
    result = invert(studio, wait_for=lambda state: len(state.invert.losses) >= 3)
    assert result["interrupted"] and not result["tuned"] and 3 <= result["steps"] < 500
    shown = settle(studio)
    assert s.latent.source == result["name"] and np.abs(shown - seeds_view).mean() > 1, "result not shown"
    panel.latent_file.text = str(tmp_path / "stopped.npz")
    save(studio, "latent")
    latent = load_latent(tmp_path / "stopped.npz")
    assert latent.settings["interrupted"] and latent.settings["camera"] == "given"
    import copy
    G_latent = copy.deepcopy(G)
    export_stills(G_latent, [0], [View(math.radians(-20), 0.0)], tmp_path / "r", ["image"], sheet=False,
                  ws=apply_latent(G_latent, latent))
    (png,) = (tmp_path / "r").glob("*.png")
    assert_same_picture(shown, load(png), "stopped result in the viewport")
    generation = s.model.generation
    s.actions.append(OpenModel(s.model.path, keep_view=True))   # Reload: the seeds are back, unchanged
    run_until(studio, lambda: s.model.generation > generation and s.model.loading is None, "the reload")
    assert np.array_equal(settle(studio), seeds_view) and s.latent.source is None and s.invert.result is None
    assert not s.status_is_error, s.status


def test_unreadable_image_and_nothing_to_save_are_one_log_line(studio, tmp_path):
    s = studio.state
    run_until(studio, lambda: s.model.path is not None, "the model")
    model = s.model.path
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    for how in ("drop", "open"):
        s.set_status("")
        if how == "drop":
            studio.window.dropped.append(str(bad))
        else:
            studio.invert_panel.open_image(s, str(tmp_path / "missing.jpg"))
        name = "broken.png" if how == "drop" else "missing.jpg"
        run_until(studio, lambda name=name: s.status_is_error and name in s.status, f"the {how} error")
        lines = [text for _, text, _ in studio.log_handler.snapshot() if name in text]
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert s.model.path == model and s.model.loading is None and not s.model.error, \
            "an image was opened as a model"
        assert s.invert.target is None and name in s.invert.target_info
    studio.invert_panel.save(s, "latent")       # nothing inverted into the reloaded model
    run_until(studio, lambda: s.status_is_error and "no inversion result" in s.status, "the save error")
    assert sum("no inversion result" in text for _, text, _ in studio.log_handler.snapshot()) == 1


def render_cli(tmp_path: Path, name: str, *args: str) -> np.ndarray:
    """`main.py render` of the test model (extra args) -> its one image PNG's pixels."""
    out = tmp_path / name
    r = subprocess.run([sys.executable, "main.py", "render", str(MODEL), *args, "--out", str(out), "--device", "cpu"],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    (png,) = [p for p in out.glob("*_image.png") if not p.name.startswith("grid")]
    return load(png)


def type_into(studio, rect: tuple[float, float, float, float], text: str) -> None:
    """Ctrl+click the slider at `rect` (window coordinates) and type a value, through the X server."""
    from studio_helpers import xdo
    x, y = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    xdo(studio, "mousemove", "--window", "WINDOW", int(x), int(y))
    for _ in range(3):
        studio.step()
    xdo(studio, "keydown", "ctrl", "click", "1", "keyup", "ctrl")
    for _ in range(3):
        studio.step()
    xdo(studio, "key", "ctrl+a", "type", text)
    xdo(studio, "key", "Return")
    for _ in range(3):
        studio.step()


def mean_w_view(G, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The test model's mean w at yaw/pitch through a fresh engine, int16 pixels."""
    from app.invert_camera import render_view
    from core.engine import RenderEngine
    return render_view(RenderEngine(copy.deepcopy(G), "cpu"), yaw_deg, pitch_deg).astype(np.int16)


def test_estimate_camera_check_correct_by_hand_then_invert(studio, G, target, tmp_path):
    from core.cameras import frontal_label
    from core.latents import load_latent
    s, panel = studio.state, studio.invert_panel
    run_until(studio, lambda: s.model.path is not None, "the model")
    panel.path_text, panel.frame_on, panel.camera = str(target[0]), False, 2   # camera: estimate
    panel.camera_search = quick_search()
    panel.estimate(s)
    run_until(studio, lambda: s.invert.estimating, "the estimate to start")
    run_until(studio, lambda: not s.invert.estimating, "the camera estimate", 600)   # 124 s on a loaded machine
    assert s.invert.estimate is not None, s.status
    studio.step()                                   # the panel draws the check
    yaw, pitch = s.invert.estimate
    assert (panel.yaw_deg, panel.pitch_deg) == (yaw, pitch), "the sliders do not start at the estimate"
    assert s.invert.view_at == (yaw, pitch)
    np.testing.assert_array_equal(s.invert.view, mean_w_view(G, yaw, pitch))
    assert_same_picture(s.invert.view.astype(np.int16),
                        render_cli(tmp_path, "estimated", "--seeds", "0", "--psi", "0", "--yaw", repr(yaw),
                                   "--pitch", repr(pitch)), "the model at the estimated camera")

    corrected = float(np.float32(round(max(-80.0, min(80.0, pitch + 12.0)), 1)))
    type_into(studio, panel.item_rects["check pitch"], f"{corrected:.1f}")   # Ctrl+click the slider, type
    assert panel.pitch_deg == corrected, panel.pitch_deg
    run_until(studio, lambda: s.invert.view_at == (yaw, corrected), "the thumbnail at the corrected camera")
    np.testing.assert_array_equal(s.invert.view, mean_w_view(G, yaw, corrected))
    assert np.abs(s.invert.view.astype(np.int16) - mean_w_view(G, yaw, pitch)).mean() > 1, "the view did not move"

    panel.steps, panel.tune_steps = 12, 0
    result = invert(studio)
    assert abs(result["yaw_deg"] - yaw) < 1e-3 and abs(result["pitch_deg"] - corrected) < 1e-3, result
    assert not result["estimated"], "the inversion searched the camera again"
    shown = settle(studio)
    panel.latent_file.text = str(tmp_path / "checked.npz")
    save(studio, "latent")
    latent = load_latent(tmp_path / "checked.npz")
    assert latent.settings["camera"] == "given"
    assert torch.allclose(latent.camera, frontal_label(G.options, None, yaw=math.radians(yaw),
                                                       pitch=math.radians(corrected))[0], atol=1e-6)
    assert_same_picture(shown, render_cli(tmp_path, "checked", "--latent", str(tmp_path / "checked.npz"),
                                          "--yaw", repr(yaw), "--pitch", repr(corrected)), "the corrected inversion")


def test_frame_option_reframes_an_off_centre_photo(studio, G, tmp_path):
    from PIL import Image

    from core.imaging import to_uint8
    from core.latents import load_latent, prepare_image
    s, panel = studio.state, studio.invert_panel
    run_until(studio, lambda: s.model.path is not None, "the model")
    photo = np.full((180, 260, 3), 128, np.uint8)   # a grey backdrop, the object low and to the right
    photo[100:160, 170:230] = (200, 40, 40)
    photo[120:140, 185:215] = (30, 30, 160)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    panel.path_text, panel.frame_on, panel.frame = str(tmp_path / "photo.png"), True, 0.64
    panel.open_image(s, panel.path_text)
    run_until(studio, lambda: s.invert.target is not None and s.invert.frame == 0.64 and not studio.session.busy,
              "the framed target")
    framed, info = prepare_image(tmp_path / "photo.png", G.img_resolution, G.options.white_back, 0.64)
    np.testing.assert_array_equal(s.invert.target, to_uint8(framed[0]))
    plain, _ = prepare_image(tmp_path / "photo.png", G.img_resolution, G.options.white_back)
    assert not np.array_equal(s.invert.target, to_uint8(plain[0]))
    assert s.invert.target_info == info and "centred and scaled to 0.64" in info

    panel.camera, panel.yaw_deg, panel.pitch_deg, panel.steps, panel.tune_steps = 1, 0.0, 0.0, 2, 0
    assert invert(studio)["prepared"] == info     # the result says what was done to the photo
    panel.latent_file.text = str(tmp_path / "framed.npz")
    save(studio, "latent")
    assert load_latent(tmp_path / "framed.npz").settings["image_preparation"] == info
    generation = s.model.generation
    s.actions.append(OpenModel(s.model.path, keep_view=True))   # Reload: the target is prepared again, framed
    run_until(studio, lambda: s.model.generation > generation and s.model.loading is None and not studio.session.busy
              and not any(isinstance(a, OpenInvertImage) for a in s.actions), "the reload and the target")
    np.testing.assert_array_equal(s.invert.target, to_uint8(framed[0]))


def test_cancel_stops_the_camera_estimate_within_seconds(studio, target):
    """While the estimate computes in its child process the UI draws at most BUSY_FPS frames a second and
    input brings it back to its full rate; Cancel stops the estimate within seconds."""
    import threading
    import time

    from app.studio import BUSY_FPS, INPUT_HOLD_S
    from core import compute_process
    s, panel = studio.state, studio.invert_panel
    run_until(studio, lambda: s.model.path is not None, "the model")
    panel.path_text, panel.frame_on, panel.camera, panel.camera_search = str(target[0]), False, 2, None   # minutes
    panel.estimate(s)
    run_until(studio, lambda: s.invert.estimating, "the estimate to start")
    run_until(studio, lambda: compute_process.running(), "the search to run in its child process")
    start = time.monotonic()
    while time.monotonic() - start < INPUT_HOLD_S + 0.2:   # the last input's full rate runs out
        studio.step()
    frames, start = studio.frame_count, time.monotonic()
    while time.monotonic() - start < 2.5:           # no input: the UI leaves the cores to the child
        studio.step()
    rate = (studio.frame_count - frames) / (time.monotonic() - start)
    assert rate <= BUSY_FPS * 1.5, f"{rate:.1f} fps while the child computes"
    move = threading.Timer(0.1, xdo, (studio, "mousemove", "--window", "WINDOW", 200, 200))
    start = time.monotonic()
    move.start()
    studio.step()                                   # waits for input, not for the whole 1 / BUSY_FPS
    move.join()
    assert time.monotonic() - start < 0.8 / BUSY_FPS, "input did not wake the UI"
    start = time.monotonic()
    for _ in range(10):
        studio.step()
    assert time.monotonic() - start < 2.5, "input did not bring the UI back to its full frame rate"
    asked = time.monotonic()
    s.actions.append(CancelInvertCamera())          # the panel's Cancel button
    run_until(studio, lambda: not s.invert.estimating, "the cancelled estimate", 30)
    assert time.monotonic() - asked < 20, "Cancel did not stop the estimate promptly"
    assert s.invert.estimate is None and s.invert.view is None and "stopped" in s.status, s.status
    assert not studio.session.inversion.busy
