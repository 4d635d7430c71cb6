"""The studio attached to `main.py serve` (a subprocess on 127.0.0.1) under Xvfb, driven through the X server.

What the window shows attached is compared with what the same state renders to without the network: a local
RenderEngine on the same checkpoint (orbit drag, seed change, after a server restart) and the PNG that
`main.py render` writes (`--connect ... --viewport`). A mesh export comes back byte for byte as the server
wrote it. The served checkpoint is a copy in a temporary folder (the server writes its exports/ there).
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import studio_helpers
from remote_helpers import ROOT, start_server
from studio_helpers import assert_same_picture, load, quick_search, run_until, xdo

MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"
WAIT_S = 120


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    shutil.copy(MODEL, folder / MODEL.name)
    server = start_server(folder / MODEL.name, folder / "serve.token", folder / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local_engine():
    from core.checkpoint import load_generator
    from core.engine import RenderEngine
    return RenderEngine(load_generator(MODEL, "cpu"), "cpu")


@pytest.fixture(scope="module")
def studio(display, served, tmp_path_factory):
    if shutil.which("xdotool") is None:
        pytest.fail("xdotool is not installed (apt-get install xdotool)")
    from app.attached import attach
    from app.studio import Studio
    backend = attach(served.url, str(served.token_file))
    s = Studio(backend.url, settings_dir=tmp_path_factory.mktemp("settings"), window_size=(1000, 640),
               output_dir=tmp_path_factory.mktemp("out"), backend=backend)
    s.state.view.pixel_exact, s.state.view.probe = True, False
    yield s
    s.close()
    assert [p.last_error for p in s.panels if p.last_error] == []


def settle(studio) -> np.ndarray:
    return studio_helpers.settle(studio, WAIT_S)


def expected_view(studio, engine) -> np.ndarray:
    """The local engine's SR image of the studio's final request (what the viewport must show)."""
    from app.state import final_request
    from core.imaging import to_uint8
    frame = engine.render(final_request(studio.state))
    assert frame.error is None, frame.error
    return to_uint8(frame.image).astype(np.int16)


def pump(studio, frames: int = 3) -> None:
    for _ in range(frames):
        studio.step()


@pytest.mark.parametrize("mode", ["image", "image_depth"])
def test_attached_start_view_equals_the_servers_render_png(served, display, tmp_path, mode):
    """`main.py --connect URL --seed 3 --yaw 30 --pitch 10 --mode M --viewport PNG` saves render's PNG of that
    state, where render runs beside the server on its checkpoint."""
    args = ["--seed", "3", "--yaw", "30", "--pitch", "10", "--psi", "0.7"]
    shown = tmp_path / "viewport.png"
    subprocess.run([sys.executable, "main.py", "--connect", served.url, "--token-file", str(served.token_file),
                    *args, "--mode", mode, "--viewport", str(shown)], cwd=ROOT, check=True, timeout=300,
                   capture_output=True)
    subprocess.run([sys.executable, "main.py", "render", str(served.token_file.parent / MODEL.name), "--seeds", "3",
                    *args[2:], "--mode", mode, "--out", str(tmp_path / "render"), "--device", "cpu"], cwd=ROOT,
                   check=True, timeout=300, capture_output=True)
    assert_same_picture(load(shown), load(tmp_path / "render" / f"seed0003_yaw+30_pitch+10_{mode}.png"),
                        f"attached viewport ({mode})")


def test_connect_with_a_wrong_token_says_so_in_one_line(served, display, tmp_path):
    wrong = tmp_path / "wrong.token"
    wrong.write_text("0" * 32)
    done = subprocess.run([sys.executable, "main.py", "--connect", served.url, "--token-file", str(wrong),
                           "--viewport", str(tmp_path / "v.png")], cwd=ROOT, timeout=120, capture_output=True,
                          text=True)
    assert done.returncode != 0 and not (tmp_path / "v.png").exists()
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_orbit_drag_renders_on_the_server_what_the_local_engine_renders(studio, local_engine):
    before = settle(studio)
    assert studio.state.model.path == MODEL.name
    cam0 = dataclasses.replace(studio.state.camera)
    x, y, side = studio.viewport.image_rect
    cx, cy = int(x + side / 2), int(y + side / 2)
    xdo(studio, "mousemove", "--window", "WINDOW", cx, cy)
    pump(studio)
    xdo(studio, "mousedown", 1)
    pump(studio)
    for step in range(1, 5):              # a slow drag: previews come back while the button is down
        xdo(studio, "mousemove", "--window", "WINDOW", cx + 6 * step, cy)
        pump(studio, 4)
    xdo(studio, "mouseup", 1)
    after = settle(studio)
    turned = dataclasses.replace(cam0)
    turned.orbit(-math.pi * 24 / side, 0.0)
    assert studio.state.camera.yaw == pytest.approx(turned.yaw)
    assert np.abs(after - before).mean() > 1, "the drag did not change the picture"
    assert_same_picture(after, expected_view(studio, local_engine), "attached view after the drag")
    p = studio.state.perf
    assert "preview" in p.rung_ms and dict(p.link)["round trip"] != "-", p.link
    frame = studio.latest_frame                   # the pixel probe's depth and opacity came with the frame
    assert frame.depth is not None and frame.opacity is not None and 0 < (frame.opacity > 0.5).float().mean() < 1


def test_seed_change_shows_the_new_seed(studio, local_engine):
    before = settle(studio)
    studio.state.latent.seed += 5
    studio.state.interaction.touch()
    after = settle(studio)
    assert np.abs(after - before).mean() > 1
    assert_same_picture(after, expected_view(studio, local_engine), "attached view of the new seed")


def test_mesh_export_is_downloaded_as_the_server_wrote_it(studio, served, tmp_path):
    import trimesh

    from app.actions import ExportMesh
    from core.mesh import MeshOptions
    settle(studio)
    out = tmp_path / "attached.ply"
    studio.state.actions.append(ExportMesh(out, studio.state.latent.latent(), MeshOptions(resolution=64)))
    run_until(studio, lambda: studio.state.job.outcome_of == "ExportMesh", "the mesh export", WAIT_S)
    assert not studio.state.job.outcome_error, studio.state.job.outcome
    on_server = served.token_file.parent / "exports" / out.name
    assert out.read_bytes() == on_server.read_bytes()
    assert len(trimesh.load(out, process=False).faces) > 100


def test_server_restart_shows_reconnecting_keeps_the_state_and_resumes(studio, served, local_engine):
    settle(studio)
    seed = studio.state.latent.seed
    served.stop()
    run_until(studio, lambda: "disconnected, reconnecting" in studio.state.status, "the disconnected status", 30)
    restarted = start_server(served.token_file.parent / MODEL.name, served.token_file, served.log, port=served.port)
    served.proc = restarted.proc               # the fixture stops whichever process serves now
    run_until(studio, lambda: studio.state.status.startswith("reconnected"), "the reconnection", WAIT_S)
    assert studio.state.latent.seed == seed
    studio.state.latent.seed += 1
    studio.state.interaction.touch()
    shown = settle(studio)
    assert_same_picture(shown, expected_view(studio, local_engine), "attached view after the restart")


def test_invert_on_the_server_shows_progress_and_saves_a_latent_render_reads(studio, served, local_engine, tmp_path):
    """The Invert panel attached: the image is uploaded and inverted on the server (live loss curve and
    reconstruction), the viewport then shows the result, and the latent.npz downloaded from the server renders
    with `render --latent` to the same picture."""
    from app.state import StartView
    from core.imaging import save_png
    from core.latents import load_latent
    s, panel = studio.state, studio.invert_panel
    settle(studio)
    StartView(seed=3, yaw_deg=25, pitch_deg=0.0).apply(s, s.model.options)
    goal = expected_view(studio, local_engine)
    png = save_png(tmp_path / "target.png", goal.astype(np.uint8))
    panel.open_image(s, str(png))
    panel.path_text = str(png)
    run_until(studio, lambda: s.invert.target is not None, "the prepared target", WAIT_S)
    np.testing.assert_array_equal(s.invert.target, goal)
    StartView(seed=0, yaw_deg=0, pitch_deg=0.0).apply(s, s.model.options)
    seeds_view = settle(studio)
    panel.camera, panel.yaw_deg, panel.pitch_deg, panel.steps, panel.tune_steps = 1, 25.0, 0.0, 12, 0
    panel.start(s)
    run_until(studio, lambda: s.invert.running, "the inversion to start", WAIT_S)
    run_until(studio, lambda: not s.invert.running, "the inversion to finish", WAIT_S)
    result = s.invert.result
    assert result is not None and not result["interrupted"], s.status
    assert abs(result["yaw_deg"] - 25) < 1e-3 and s.invert.preview is not None and len(s.invert.losses) >= 12
    shown = settle(studio)
    assert s.latent.source == result["name"]
    assert np.abs(shown - goal).mean() < np.abs(seeds_view - goal).mean()
    panel.latent_file.text = str(tmp_path / "latent.npz")
    panel.save(s, "latent")
    run_until(studio, lambda: not s.actions and not studio.session.inversion.busy, "saving the latent", WAIT_S)
    assert s.status.startswith("saved latent"), s.status
    assert load_latent(tmp_path / "latent.npz").ws.shape[1] == local_engine.G.num_ws
    subprocess.run([sys.executable, "main.py", "render", str(served.token_file.parent / MODEL.name), "--latent",
                    str(tmp_path / "latent.npz"), "--yaw", "25", "--out", str(tmp_path / "r"), "--device", "cpu"],
                   cwd=ROOT, check=True, capture_output=True, timeout=240)
    assert_same_picture(shown, load(tmp_path / "r" / "latent_yaw+25_pitch+0_image.png"), "inverted view attached")
    s.latent.source = None


def test_a_served_run_is_watched_through_the_server_and_its_new_snapshot_reloads(tmp_path):
    """`serve RUN_DIR` and a session attached to it (no window needed): the Training panel's reader gets the
    run's metric entries and its newest grid (the same pixels), and a snapshot written later is hot-reloaded
    into the attached session (as a trainer's snapshot is)."""
    import json
    import time

    from app.actions import OpenModel
    from app.attached import attach
    from app.session import Session
    from app.settings import Settings
    from app.state import AppState
    from core.imaging import save_png
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(MODEL, run / "network-snapshot-000000.ckpt")
    ticks = [{"event": "tick", "kimg": 0.1 * i, "loss_G": 1.0 / (i + 1), "images_per_s": 5.0} for i in range(3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    grid = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    save_png(run / "fakes000000000.png", grid)
    served = start_server(run, tmp_path / "serve.token", tmp_path / "serve.log")
    state = AppState()
    backend = attach(served.url, str(served.token_file))
    session = Session(state, Settings(), "cpu", backend=backend)
    try:
        state.actions.append(OpenModel(backend.url))

        def tick_until(condition, what):
            deadline = time.monotonic() + WAIT_S
            while not condition():
                assert time.monotonic() < deadline, f"gave up waiting for {what} ({state.status})"
                session.tick(0.05)
                session.submit()
                time.sleep(0.05)

        tick_until(lambda: state.model.path == "run" and session.shown is not None, "the served run's model")
        reader = state.training.reader
        tick_until(lambda: len(reader.metrics()) == 3 and "image" in reader.newest_grids(), "the run's curves")
        assert [e["loss_G"] for e in reader.metrics()] == [t["loss_G"] for t in ticks]
        np.testing.assert_array_equal(load(reader.newest_grids()["image"]), grid)
        generation = state.model.generation
        shutil.copy(MODEL, run / "network-snapshot-000004.ckpt")
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"event": "tick", "kimg": 0.4, "loss_G": 0.2}) + "\n")
        tick_until(lambda: state.model.generation > generation, "the hot reload")
        assert state.status.startswith("reloaded") and state.model.info["file"] == "run/network-snapshot-000004.ckpt"
        assert state.model.info["server"] == served.url   # the Model panel says where the model is
        tick_until(lambda: len(reader.metrics()) == 4, "the new metric entry")
    finally:
        session.close()
        served.stop()


def test_pca_planes_and_a_video_run_on_the_server(studio, tmp_path):
    """The Latent panel's PCA, the Planes panel's inspection and a video export, attached: PCA makes the
    direction sliders change the picture, the plane images arrive, the video comes back with its frames."""
    import imageio_ffmpeg

    from app.actions import ComputePCA, ExportVideo, InspectPlanes
    from app.state import final_request
    from core.camera_path import CameraPath, Keyframe
    s = studio.state
    before = settle(studio)
    s.actions.append(ComputePCA())
    run_until(studio, lambda: s.pca_ready, "the principal directions", WAIT_S)
    s.actions.append(InspectPlanes(key=("attached",), latent=s.latent.latent(), channel=None))
    run_until(studio, lambda: s.planes is not None and s.planes[0] == ("attached",), "the planes", WAIT_S)
    planes = s.planes[1]
    assert isinstance(planes, dict) and planes["rgb"].ndim >= 3 and planes["rgb"].std() > 0, planes
    out = tmp_path / "path.mp4"
    turned = dataclasses.replace(s.camera)
    turned.orbit(0.6, 0.0)
    path = CameraPath([Keyframe.from_orbit(s.camera), Keyframe.from_orbit(turned)])   # the Camera path panel's
    s.actions.append(ExportVideo(out, final_request(s), dataclasses.replace(s.camera), kind="keyframes", frames=6,
                                 fps=6.0, keyframes=path))
    run_until(studio, lambda: s.job.outcome_of == "ExportVideo", "the video export", WAIT_S)
    assert not s.job.outcome_error, s.job.outcome
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8) for f in reader]
    assert len(frames) == 6 and meta["size"] == tuple(before.shape[1::-1]) and np.std(frames) > 5
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1, "the video does not follow the camera path"
    s.latent.directions = [3.0]
    s.interaction.touch()
    assert np.abs(settle(studio) - before).mean() > 1, "the first principal direction did not change the picture"
    s.latent.directions = []


def test_connect_to_nothing_says_so_at_once(display, served, tmp_path):
    import time
    start = time.monotonic()
    done = subprocess.run([sys.executable, "main.py", "--connect", "ws://127.0.0.1:1", "--token-file",
                           str(served.token_file)], cwd=ROOT, timeout=120, capture_output=True, text=True)
    assert done.returncode != 0 and time.monotonic() - start < 20
    assert done.stderr.strip().startswith("error: cannot attach to ws://127.0.0.1:1") and \
        len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_stop_midway_keeps_the_servers_best_result(studio, tmp_path):
    """Stop in the Invert panel cancels the server's job, which keeps its best result so far (as locally)."""
    from core.imaging import save_png
    s, panel = studio.state, studio.invert_panel
    settle(studio)
    png = save_png(tmp_path / "target.png", settle(studio).astype(np.uint8))
    panel.open_image(s, str(png))
    panel.path_text = str(png)
    run_until(studio, lambda: s.invert.target is not None and s.invert.image == str(png), "the target", WAIT_S)
    panel.camera, panel.yaw_deg, panel.pitch_deg, panel.steps, panel.tune_steps = 1, 0.0, 0.0, 5000, 0
    earlier = s.invert.result["name"] if s.invert.result else None
    panel.start(s)
    run_until(studio, lambda: s.invert.running, "the inversion to start", WAIT_S)
    run_until(studio, lambda: len(s.invert.losses) >= 3, "the first steps on the server", WAIT_S)
    panel.stop(s)
    run_until(studio, lambda: not s.invert.running, "the stopped inversion", WAIT_S)
    assert s.invert.result is not None and s.invert.result["interrupted"], s.status
    assert s.invert.result["name"] != earlier
    assert 3 <= s.invert.result["steps"] < 5000 and s.latent.source == s.invert.result["name"]
    s.latent.source = None


def test_camera_check_runs_on_the_server(studio, local_engine, tmp_path):
    """Estimate camera attached: the server estimates and renders the model's mean w at the estimate (what a
    local engine renders there), the sliders start at it, and moving one re-renders the view on the server."""
    from app.invert_camera import render_view
    from app.state import StartView
    from core.imaging import save_png
    s, panel = studio.state, studio.invert_panel
    settle(studio)
    StartView(seed=3, yaw_deg=-30, pitch_deg=0.0).apply(s, s.model.options)
    png = save_png(tmp_path / "target.png", settle(studio).astype(np.uint8))
    panel.path_text, panel.frame_on, panel.camera = str(png), False, 2   # camera: estimate
    panel.camera_search = quick_search()   # sent to the server as JSON
    panel.estimate(s)
    run_until(studio, lambda: s.invert.estimating, "the estimate to start", WAIT_S)
    run_until(studio, lambda: not s.invert.estimating, "the estimate on the server", 4 * WAIT_S)
    assert s.invert.estimate is not None and s.invert.image == str(png), s.status
    pump(studio)
    yaw, pitch = s.invert.estimate
    assert (panel.yaw_deg, panel.pitch_deg) == (yaw, pitch) and s.invert.view_at == (yaw, pitch)
    assert_same_picture(s.invert.view.astype(np.int16), render_view(local_engine, yaw, pitch).astype(np.int16),
                        "the server's view at the estimate")   # another process: 1 level of rounding allowed
    panel.yaw_deg = yaw + 20.0
    panel.preview_view(s)
    run_until(studio, lambda: s.invert.view_at == (yaw + 20.0, pitch), "the view at the corrected camera", WAIT_S)
    assert_same_picture(s.invert.view.astype(np.int16), render_view(local_engine, yaw + 20.0, pitch).astype(np.int16),
                        "the server's view at the corrected camera")
