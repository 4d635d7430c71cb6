"""The studio under Xvfb (llvmpipe): a real window driven by scripted input, pixels read back.

One studio instance (fixture snapshot, small render settings) serves the in-process tests; the CLI
tests run `python main.py` in a subprocess. Nothing is timed: waits are bounded loops of UI frames.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from studio_helpers import DrawnItems

from app.actions import CancelJob, SaveFramePNG, SaveWindowPNG, StartRecording, StopRecording
from app.state import AppState, next_request, render_ladder
from app.training_panel import series

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 90


@pytest.fixture(scope="module")
def studio(display, snapshot_pkl, tmp_path_factory):
    from app.studio import Studio
    settings = tmp_path_factory.mktemp("settings")
    s = Studio(str(snapshot_pkl), settings_dir=settings, window_size=(1100, 700))
    s.state.view.sample_scale = 0.5            # keep renders small on the shared CPU
    s.settings_dir_for_test = settings
    yield s
    if s.window is not None:
        s.close()
    assert [p.last_error for p in s.panels if p.last_error] == []


def run_until(studio, condition, what: str, limit: float = WAIT_S) -> int:
    """Step UI frames until condition() holds; returns the frames it took."""
    start, frames = time.monotonic(), 0
    while not condition():
        assert time.monotonic() - start < limit, f"gave up waiting for {what} after {frames} frames"
        studio.step()
        frames += 1
    return frames


def settle(studio) -> np.ndarray:
    run_until(studio, lambda: studio.settled, "the final frame")
    studio.step()                               # draw the settled frame into the viewport target
    return studio.display.read().astype(np.int16)


def drag(studio, button: int, dx: float, dy: float, steps: int = 6) -> None:
    """Press inside the viewport image, move by (dx, dy) pixels in `steps` frames, release."""
    from imgui_bundle import imgui
    io = imgui.get_io()
    x, y, side = studio.viewport.image_rect
    cx, cy = x + side / 2, y + side / 2
    io.add_mouse_pos_event(cx, cy)
    studio.step()
    io.add_mouse_button_event(button, True)
    studio.step()
    for i in range(1, steps + 1):
        io.add_mouse_pos_event(cx + dx * i / steps, cy + dy * i / steps)
        studio.step()
    io.add_mouse_button_event(button, False)
    studio.step()


# ---- pure state logic ---------------------------------------------------------------------------------

def test_ladder_floors_and_refinement():
    s = AppState()
    s.model.neural_resolution = 128
    s.view.sample_scale = 2.0
    s.interaction.dragging = True
    (preview,) = render_ladder(s)
    assert (preview.resolution, preview.sample_scale, preview.superresolution) == (64, 1.0, False)
    s.view.resolution, s.view.sample_scale = 32, 0.25         # already below the floors: kept as is
    (preview,) = render_ladder(s)
    assert (preview.resolution, preview.sample_scale) == (32, 0.25)
    s.interaction.dragging = False
    s.interaction.last_input = -1e9
    raw, final = render_ladder(s)
    assert not raw.superresolution and final.superresolution and raw.resolution == final.resolution == 32
    assert next_request([raw, final], None) == raw
    assert next_request([raw, final], raw) == final
    assert next_request([raw, final], final) is None
    s.view.mode = "depth"
    assert [r.superresolution for r in render_ladder(s)] == [False]


# ---- the real window ----------------------------------------------------------------------------------

def test_opens_model_and_shows_a_super_resolved_frame(studio, snapshot_pkl):
    first = settle(studio)
    assert studio.state.model.path == str(snapshot_pkl)
    assert studio.state.model.info["superresolution"] == "SuperresolutionHybrid4X"
    frame = studio.latest_frame
    assert frame.error is None and frame.image is not None and frame.image.shape[-1] == 256
    assert first.std() > 5, "viewport is blank"


def test_orbit_drag_previews_cheaply_then_refines(studio):
    before = settle(studio)
    yaw0, submitted = studio.state.camera.yaw, []
    original_submit = studio.worker.submit
    studio.worker.submit = lambda r: (submitted.append(r), original_submit(r))[1]
    try:
        drag(studio, 0, dx=studio.viewport.image_rect[2] * 0.25, dy=0)
        assert studio.state.camera.yaw < yaw0 - 0.3, "left-drag to the right should orbit"
        previews = [r for r in submitted if not r.superresolution]
        assert previews and all(r.resolution == 48 and r.sample_scale == 0.5 for r in previews[:1])
        after = settle(studio)
    finally:
        studio.worker.submit = original_submit
    final = studio.latest_frame.request
    assert final.superresolution and final.resolution == 64
    assert np.abs(after - before).mean() > 3, "orbiting did not change the image"


def test_ui_keeps_running_while_a_render_is_in_flight(studio):
    settle(studio)
    studio.state.latent.seed += 1                  # new ws + planes: the slowest kind of render
    studio.step()
    assert studio.worker.busy
    frames = run_until(studio, lambda: not studio.worker.busy, "the render to finish")
    assert frames >= 3, f"only {frames} UI frames ran during a full render"


def test_seed_raw_sr_and_depth_views_differ(studio):
    studio.state.view.mode = "image"
    studio.state.latent.seed = 5
    sr = settle(studio)
    studio.state.latent.seed = 6
    other_seed = settle(studio)
    assert studio.latest_frame.request.latent.seed == 6
    assert np.abs(sr - other_seed).mean() > 3, "changing the seed did not change the image"
    studio.state.view.mode = "raw"
    raw = settle(studio)
    assert np.abs(raw - other_seed).mean() > 2, "raw and SR views look the same"
    studio.state.view.mode, studio.state.view.colormap = "depth", 0
    depth = settle(studio)
    assert np.abs(depth - raw).mean() > 10
    grey = depth[..., 0]
    assert (depth[..., 0] == depth[..., 1]).all(), "grey colormap should be grey"
    assert len(np.unique(grey)) > 30 and grey.max() - grey.min() > 150, "depth is not a gradient"
    studio.state.view.split, studio.state.view.mode = True, "image"
    split = settle(studio)
    half = split.shape[1] // 2
    np.testing.assert_allclose(split[:, :half - 2].mean(), raw[:, :half - 2].mean(), atol=3)
    studio.state.view.split = False


def test_planes_panel_shows_three_planes(studio):
    planes = next(p for p in studio.panels if p.name == "Planes")
    planes.open = planes.focus = True            # its tab in front: a hidden panel computes nothing
    planes.use_pca, planes.channel = False, 3
    run_until(studio, lambda: planes.result is not None and "scalar" in planes.result, "plane images")
    images = [t.read() for t in planes.targets]
    assert all(img.std() > 5 for img in images), "a plane image is blank"
    assert len(planes.result["stats"]) == 3
    planes.use_pca = True
    run_until(studio, lambda: "rgb" in planes.result, "PCA plane images")
    assert planes.result["rgb"].shape[0] == 3 and planes.result["rgb"].std() > 10


def test_bad_dropped_file_is_an_error_line_not_a_crash(studio, tmp_path):
    settle(studio)
    bad = tmp_path / "notes.txt"
    bad.write_text("not a checkpoint")
    studio.window.dropped.append(str(bad))
    run_until(studio, lambda: studio.state.status_is_error and "notes.txt" in studio.state.status,
              "the load error")
    assert studio.state.model.path is not None and studio.latest_frame is not None
    assert not studio.display.stale, "the model still loaded must not stay greyed after a failed load"


def actions_done(studio) -> bool:
    return not studio.session.busy


def first_video_frame(path: Path) -> np.ndarray:
    import imageio.v2 as imageio
    with imageio.get_reader(path) as reader:
        return np.asarray(reader.get_data(0)).astype(np.int16)


def test_export_mesh(studio, tmp_path):
    export = studio.export_panel
    export.mesh_file.text, export.mesh_res = str(tmp_path / "shape.ply"), 0          # 64^3 grid
    export.mesh_level = 0.0
    run_until(studio, lambda: studio.engine is not None, "the model to load")
    export.export_mesh(studio.state)
    run_until(studio, lambda: actions_done(studio), "the mesh export", limit=120)
    assert "wrote" in studio.state.status, studio.state.status
    import trimesh
    mesh = trimesh.load(tmp_path / "shape.ply")
    assert len(mesh.faces) > 100 and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)


def test_export_textured_mesh_shows_its_phases_and_cancels(studio, tmp_path):
    """Faces, texture size and source in the Export panel: the progress bar names the long phases, Cancel
    stops the job in each of them (no file left), and a full run writes a GLB with its texture attached.
    (tests/test_texture.py checks every phase, short ones included, on the core function.)"""
    from app.export_panel import MESH_FACES, TEXTURE_SIZES
    export = studio.export_panel
    export.mesh_file.text, export.mesh_res, export.mesh_level = str(tmp_path / "shape.glb"), 1, 0.0  # 128^3 grid
    # cancelled runs bake 2048²: long enough in chunks that a Cancel taken one frame later lands inside it
    export.mesh_faces, export.mesh_texture = MESH_FACES.index(10_000), TEXTURE_SIZES.index(2048)
    run_until(studio, lambda: studio.engine is not None, "the model to load")
    for phase in ("refining", "unwrap", "bake: decoder"):
        export.export_mesh(studio.state)
        run_until(studio, lambda p=phase: p in studio.state.job.message or actions_done(studio), f"phase {phase}")
        studio.state.actions.append(CancelJob())
        run_until(studio, lambda: actions_done(studio), "the cancelled export")
        assert studio.state.status.endswith("cancelled"), (phase, studio.state.status)
        assert not list(tmp_path.iterdir())
    export.mesh_texture = TEXTURE_SIZES.index(512)
    export.export_mesh(studio.state)
    run_until(studio, lambda: actions_done(studio), "the textured export", limit=180)
    assert "wrote" in studio.state.status, studio.state.status
    import trimesh
    mesh = next(iter(trimesh.load(tmp_path / "shape.glb").geometry.values()))
    # topology preservation stops a few collapses short on this coarse 128³ surface (11.4k faces)
    assert 10_000 <= len(mesh.faces) <= 12_000 and mesh.visual.material.baseColorTexture.size == (512, 512)


def test_frame_png_video_and_recording_show_the_view(studio, snapshot_pkl, tmp_path):
    """Frame PNG, exported video and screen recording against `render`'s PNG of the same state
    (raw image, yaw 30 pitch 10): the same picture, not flipped or mirrored."""
    import math

    from studio_helpers import assert_same_picture, load

    from app.state import StartView
    from core.checkpoint import load_generator
    from core.images import View, export_stills
    G = load_generator(snapshot_pkl, "cpu")
    export_stills(G, [3], [View(math.radians(30), math.radians(10))], tmp_path / "render", ["image_raw"],
                  psi=0.7, sheet=False)
    reference = load(tmp_path / "render" / "seed0003_yaw+30_pitch+10_image_raw.png")
    settle(studio)                                   # the model is loaded (loading resets the camera)
    s = studio.state
    StartView(seed=3, yaw_deg=30, pitch_deg=10, psi=0.7, mode="image_raw").apply(s, s.model.options)
    s.view.sample_scale, s.view.resolution = 1.0, 0
    try:
        settle(studio)
        s.actions.append(SaveFramePNG(str(tmp_path / "frame.png"), 64))
        studio.step()
        assert_same_picture(load(tmp_path / "frame.png"), reference, "frame PNG")

        export = studio.export_panel
        export.video_file.text, export.video_frames, export.video_mode = str(tmp_path / "turn.mp4"), 3, 1   # raw
        export.video_kind = 1                                            # 360, starting at the view
        export.export_video(s)
        run_until(studio, lambda: actions_done(studio), "the video export", limit=120)
        assert "wrote" in s.status, s.status
        import imageio.v2 as imageio
        with imageio.get_reader(tmp_path / "turn.mp4") as reader:
            assert reader.count_frames() == 3
        assert_same_picture(first_video_frame(tmp_path / "turn.mp4"), reference, "video", tolerance=40)
        export.video_file.text, export.video_frames, export.video_kind = str(tmp_path / "interp.mp4"), 2, 3
        s.latent.interp_seed = 4
        export.export_video(s)                                           # interp: seed 3 -> 4, same camera
        run_until(studio, lambda: actions_done(studio), "the interpolation video", limit=120)
        with imageio.get_reader(tmp_path / "interp.mp4") as reader:
            first, last = (np.asarray(f).astype(np.int16) for f in reader)
        assert_same_picture(first, reference, "interpolation video", tolerance=40)
        assert np.abs(last - reference).mean() > 3, "the interpolation video did not move the latent"

        s.actions.append(StartRecording(str(tmp_path / "rec.mp4")))
        run_until(studio, lambda: s.recording.frames >= 5, "recorded frames")
        s.actions.append(StopRecording())
        studio.step()
        assert "saved recording" in s.status, s.status
        with imageio.get_reader(tmp_path / "rec.mp4") as reader:
            assert reader.count_frames() == s.recording.frames
        assert_same_picture(first_video_frame(tmp_path / "rec.mp4"), reference, "recording", tolerance=40)
        assert not list(tmp_path.glob(".*recording*"))
    finally:
        s.view.sample_scale = 0.5


def test_latent_saved_in_the_studio_renders_from_the_command_line(studio, snapshot_pkl, tmp_path):
    """The Latent panel's Save writes the file `render --latent` reads: seed 3 with its last ws mixed in
    from seed 11, seen from render's camera (yaw 30, pitch 10), renders from the command line to the
    studio's view, and so does the same latent in the studio's old format (ws and settings, no camera);
    Load restores the seed settings (from the old format too: test_studio_session)."""
    from studio_helpers import assert_same_picture, load

    import main
    from app.state import StartView
    settle(studio)
    s = studio.state
    StartView(seed=3, yaw_deg=30, pitch_deg=10, psi=0.7, mode="image_raw").apply(
        s, s.model.options)
    s.view.sample_scale, s.view.resolution = 1.0, 0
    panel = next(p for p in studio.panels if p.name == "Latent")
    try:
        settle(studio)
        s.actions.append(SaveFramePNG(str(tmp_path / "plain.png"), 64))
        n = s.model.num_ws
        s.latent.mix_enabled, s.latent.mix_seed, s.latent.mix_layers = True, 11, [i >= n // 2 for i in range(n)]
        settle(studio)
        s.actions.append(SaveFramePNG(str(tmp_path / "view.png"), 64))
        panel.file.text = str(tmp_path / "studio.npz")
        panel.save(s)
        run_until(studio, lambda: actions_done(studio), "saving the latent")
        assert "saved latent" in s.status, s.status
        with np.load(tmp_path / "studio.npz") as saved:     # the studio's old format: no camera
            np.savez(tmp_path / "old.npz", ws=saved["ws"], settings=saved["settings"])
        view = load(tmp_path / "view.png")
        assert np.abs(view - load(tmp_path / "plain.png")).mean() > 2, "mixing did not change the view"
        for name in ("studio", "old"):
            assert main.main(["render", str(snapshot_pkl), "--latent", str(tmp_path / f"{name}.npz"), "--yaw", "30",
                              "--pitch", "10", "--mode", "image_raw", "--no-grid", "--device", "cpu",
                              "--out", str(tmp_path / name)]) == 0
            assert_same_picture(view, load(tmp_path / name / "latent_yaw+30_pitch+10_image_raw.png"),
                                f"render --latent of the studio's {name} file")
        want = s.latent.latent()
        s.latent.seed, s.latent.mix_enabled = 0, False
        panel.load(s)
        assert s.latent.latent() == want and "loaded" in s.status, s.status
    finally:
        s.view.sample_scale, s.latent.mix_enabled = 0.5, False


def test_camera_path_editor_saves_loads_and_renders_the_path(studio, tmp_path):
    """Keyframes from two views -> JSON (the file `main.py video --path` reads) -> back -> MP4 whose
    first and last frames are the two views as the viewport shows them."""
    import dataclasses

    from studio_helpers import assert_same_picture

    from core.camera_path import CameraPath, Keyframe
    s = studio.state
    panel = next(p for p in studio.panels if p.name == "Camera path")
    s.view.mode, s.view.resolution = "raw", 32
    try:
        views = []
        for yaw in (-0.3, 0.4):
            s.camera = dataclasses.replace(s.camera, yaw=yaw)
            settle(studio)
            views.append(studio.display.render_view(s.view, 32).astype(np.int16))
            s.camera_path.keyframes.append(Keyframe.from_orbit(s.camera))
        panel.file.text = str(tmp_path / "path.json")
        panel.save(s)
        s.camera_path.keyframes = []
        panel.load(s)
        assert len(s.camera_path.keyframes) == 2 and CameraPath.load(tmp_path / "path.json").keyframes[1] == \
            s.camera_path.keyframes[1]
        export = studio.export_panel
        export.video_file.text, export.video_frames, export.video_mode = str(tmp_path / "path.mp4"), 2, 1
        export.video_kind = 2                                            # keyframes
        export.export_video(s)
        run_until(studio, lambda: actions_done(studio), "the path video", limit=120)
        import imageio.v2 as imageio
        with imageio.get_reader(tmp_path / "path.mp4") as reader:
            frames = [np.asarray(f).astype(np.int16) for f in reader]
        assert len(frames) == 2
        for frame, view in zip(frames, views):
            assert_same_picture(frame, view, "path video frame", tolerance=60)
    finally:
        s.view.mode, s.view.resolution = "image", 0


def test_training_panel_watches_a_run_and_hot_reloads(studio, small_G, tmp_path):
    from PIL import Image

    from core.checkpoint import save_checkpoint
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_options.json").write_text(json.dumps({"kimg": 1.0}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"event": "tick", "kimg": k / 10, "images_per_s": 50.0, "loss_G": 1 / (k + 1),
                    "loss_D_real": 0.5, "reg_r1": 0.01}) + "\n" for k in range(5)))
    Image.fromarray(np.full((32, 64, 3), 200, np.uint8)).save(run / "fakes000000400.png")
    save_checkpoint(run / "network-snapshot-000000400.ckpt", small_G)
    panel = next(p for p in studio.panels if p.name == "Training")
    panel.open = True
    studio.state.camera.yaw, studio.state.latent.seed = 0.4, 11
    panel.watch(studio.state, str(run))
    run_until(studio, lambda: studio.state.model.path and studio.state.model.path.endswith(".ckpt")
              and studio.settled, "the snapshot hot reload", limit=120)
    assert studio.state.camera.yaw == 0.4 and studio.state.latent.seed == 11, "hot reload lost the view"
    assert len(panel.ticks) == 5 and panel.grid.size == (64, 32)
    assert series(panel.ticks, "loss_G")[1][-1] == pytest.approx(0.2)
    model = next(p for p in studio.panels if p.name == "Model")
    model.focus = panel.focus = True
    studio.step()
    studio.step()
    assert model.file.text == studio.state.model.path, "the Model panel shows another model than the one loaded"

    def eta_drawn() -> str:
        """The ETA row of the info table as drawn (keys and values are wrapped text, in order)."""
        with DrawnItems() as drawn:
            studio.step()
        rows = [it["label"] for it in drawn.items if it["window"] == "Training" and it["kind"] == "text_wrapped"]
        return rows[rows.index("ETA") + 1]
    assert eta_drawn() not in ("done", "-")
    with open(run / "metrics.jsonl", "a") as f:      # the run reaches its kimg and ends
        f.write(json.dumps({"event": "tick", "kimg": 1.0, "images_per_s": 50.0, "loss_G": 0.1}) + "\n")
    run_until(studio, lambda: len(panel.ticks) == 6, "the last tick")
    assert eta_drawn() == "done"


def test_window_screenshot_and_settings_persist(studio, tmp_path):
    out = tmp_path / "window.png"
    studio.state.actions.append(SaveWindowPNG(str(out)))
    studio.step()
    from PIL import Image
    pixels = np.asarray(Image.open(out))
    assert pixels.shape[:2] == studio.window.framebuffer_size[::-1] and pixels.std() > 5
    settings_dir = studio.settings_dir_for_test
    hot_reloaded = studio.state.model.path
    assert hot_reloaded.endswith(".ckpt")
    studio.close()
    studio.window = None
    saved = json.loads((settings_dir / "settings.json").read_text())
    assert saved["recent"][0].endswith("network-snapshot-small.pkl"), saved["recent"]
    assert str(Path(hot_reloaded).resolve()) not in saved["recent"], "hot reloads must stay out of Recent"
    assert saved["open_panels"]["Planes"] is True
    assert "[Window][Viewport]" in (settings_dir / "imgui.ini").read_text()


# ---- the command line ---------------------------------------------------------------------------------

def test_no_display_is_one_line_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "main.py", "--screenshot", str(tmp_path / "x.png")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no display") and "render|video|mesh" in lines[0]
    assert "Traceback" not in r.stderr


def test_screenshot_command_writes_the_window(display, snapshot_pkl, tmp_path):
    out = tmp_path / "studio.png"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "main.py", "--screenshot", str(out), "--frames", "3",
                        "--device", "cpu", str(snapshot_pkl)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    from PIL import Image
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert pixels.shape[0] > 400 and pixels.std() > 10
