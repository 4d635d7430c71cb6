"""The studio's session and state logic without a window: animation on every tab, dynamic preview
resolution, refinement-step timings, training started through training.runner (and its failure
reason), and one-line log records."""
from __future__ import annotations

import dataclasses
import logging
import time

import pytest
import torch

from app.session import Session, trainer_reason
from app.settings import Settings
from app.state import AppState, render_ladder


def make_session(tmp_path) -> Session:
    return Session(AppState(), Settings(), torch.device("cpu"))


def test_latent_animation_runs_in_the_session_tick(tmp_path):
    """The animation advances in Session.tick, whichever panel is (or is not) drawn."""
    session = make_session(tmp_path)
    lat = session.state.latent
    lat.seed, lat.animate, lat.speed = 5, True, 2.0
    for _ in range(3):
        session.tick(0.3)                       # 1.8 seeds
    assert lat.seed == 6 and lat.interp_enabled and lat.interp_seed == 7
    assert lat.interp_t == pytest.approx(0.8)
    assert session.state.interaction.active()   # previews while animating


def test_dynamic_resolution_follows_the_target_frame_rate():
    session = Session(AppState(), Settings(), torch.device("cpu"))
    s = session.state
    s.model.neural_resolution, s.view.sample_scale, s.view.target_fps = 128, 1.0, 10.0
    s.interaction.dragging = True
    (preview,) = render_ladder(s)
    assert preview.resolution == 64                      # starts at half size
    for _ in range(20):
        session._adapt_preview(0.4)                      # 4x too slow for 10 fps
    (preview,) = render_ladder(s)
    assert preview.resolution == 48 and preview.sample_scale == 0.5, "preview must stop at the floors"
    for _ in range(20):
        session._adapt_preview(0.01)                     # fast: grows back, up to full size
    (preview,) = render_ladder(s)
    assert preview.resolution == 128 and preview.sample_scale == 1.0
    s.interaction.dragging, s.interaction.last_input = False, -1e9
    raw, final = render_ladder(s)
    assert raw.resolution == final.resolution == 128 and final.superresolution


def test_training_failure_shows_the_trainers_reason(tmp_path):
    from app.actions import StartTraining
    from training.runner import TrainSpec
    session = make_session(tmp_path)
    run = tmp_path / "run"
    session.state.actions.append(StartTraining(TrainSpec(run_dir=str(run), data=str(tmp_path / "missing"),
                                                         kimg=1.0, snap=0.5, tick=0.1)))
    start = time.monotonic()
    while session.state.training.exit_code is None:
        assert time.monotonic() - start < 120, "the trainer did not exit"
        session.tick(0.05)
        time.sleep(0.05)
    t = session.state.training
    assert t.exit_code == 2 and not t.running
    assert t.error == f"{tmp_path / 'missing'}: no such dataset folder or zip", t.error
    assert session.state.status_is_error and "exited with code" not in session.state.status


def test_trainer_reason_falls_back_to_the_exit_code():
    assert trainer_reason("step 1\nerror: dataset too small\n", 2) == "dataset too small"
    assert trainer_reason("", -9) == "exited with code -9"


def test_log_records_are_one_line_with_details():
    from app.log_panel import DequeHandler
    handler = DequeHandler()
    logger = logging.getLogger("test-studio-log")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        try:
            raise ValueError("bad file\nsecond line")
        except ValueError:
            logger.exception("open failed")
        logger.info("plain")
    finally:
        logger.removeHandler(handler)
    (level, line, details), (_, plain, none) = handler.snapshot()
    assert level == logging.ERROR and line.endswith("open failed") and "\n" not in line
    assert "Traceback" in details and "ValueError: bad file" in details
    assert plain.endswith("plain") and none == ""


def test_render_settings_reach_every_rung():
    """Noise mode/seed and the coarse/importance multipliers are part of preview and final requests."""
    s = AppState()
    v = s.view
    v.noise_mode, v.noise_seed, v.coarse_scale, v.importance_scale = "random", 7, 1.5, 0.0
    s.interaction.dragging = True
    (preview,) = render_ladder(s)
    s.interaction.dragging, s.interaction.last_input = False, -1e9
    for r in (preview, *render_ladder(s)):
        assert (r.noise_mode, r.noise_seed, r.coarse_scale, r.importance_scale) == ("random", 7, 1.5, 0.0)
    v.noise_mode = "const"
    assert render_ladder(s)[-1].noise_seed == 0, "the seed only matters (and only keys caches) for random"


def test_save_latent_action_round_trip(small_G, tmp_path):
    """SaveLatent (through the engine) writes core.latents' file: the ws on screen and the view's camera,
    which load_latent reads back; the Latent panel restores the settings from it, and from a file in the
    studio's old format (ws and settings only, written here with numpy)."""
    import json

    import numpy as np

    from app.actions import ComputePCA, SaveLatent
    from app.handlers import run_action
    from app.latent_panel import latent_settings, restore_settings
    from app.state import LatentState
    from core.cameras import OrbitCamera
    from core.engine import RenderEngine
    from core.latents import load_latent
    from core.progress import Progress
    engine = RenderEngine(small_G, "cpu")
    lat = LatentState(seed=9, psi=0.5, mix_enabled=True, mix_layers=[False] * 10 + [True] * 4)
    camera = OrbitCamera(yaw=0.3, pitch=-0.1, radius=2.5, pivot=(0.1, 0.0, 0.2))
    action = SaveLatent(tmp_path / "l.npz", latent_settings(lat), lat.latent(), tuple(camera.label()[0].tolist()))
    assert "saved" in run_action(action, engine, Progress())
    saved = load_latent(tmp_path / "l.npz")
    assert torch.equal(saved.ws, engine.ws(lat.latent()))
    assert torch.equal(saved.camera, camera.label()[0]) and not saved.noise
    restored = LatentState()
    restore_settings(tmp_path / "l.npz", restored)
    assert restored.latent() == lat.latent()
    with open(tmp_path / "old.npz", "wb") as f:
        np.savez(f, ws=saved.ws.numpy(), settings=np.array(json.dumps(latent_settings(lat))))
    old = load_latent(tmp_path / "old.npz")
    assert torch.equal(old.ws, saved.ws) and old.camera is None
    restored = LatentState()
    restore_settings(tmp_path / "old.npz", restored)
    assert restored.latent() == lat.latent()
    assert "ready" in run_action(ComputePCA(), engine, Progress())


def test_eta_after_the_run_is_over():
    """The ETA says why a run is over instead of the last estimate: finished, stopped or failed (a run
    started here), done (the last tick reached the target), or no progress (a run started elsewhere
    that stopped logging)."""
    from app.state import TrainingState
    from app.training_panel import eta_text, run_over
    ticks = [{"event": "tick", "kimg": k / 10, "time_s": 10.0 * k, "images_per_s": 50.0} for k in range(5)]
    running = TrainingState(run_dir="/runs/a", running=True)
    assert run_over(running, "/runs/a", ticks, 1000.0, 1010.0) == ""
    assert eta_text(ticks, 1.0, "") == "00:00:12"
    for code, error, said in ((0, "", "finished"), (130, "", "stopped"), (2, "bad data", "failed")):
        over = TrainingState(run_dir="/runs/a", running=False, exit_code=code, error=error)
        assert eta_text(ticks, 1.0, run_over(over, "/runs/a", ticks, 1000.0, 1010.0)) == said
    assert run_over(over, "/runs/other", ticks, 1000.0, 1010.0) == ""        # another run: not this one's exit
    assert run_over(TrainingState(), "/runs/b", ticks, 1000.0, 1000.0 + 301) == "no progress for 5 min"
    assert eta_text(ticks + [{"event": "tick", "kimg": 1.0, "images_per_s": 50.0}], 1.0) == "done"


def test_settings_of_two_studios_merge(tmp_path):
    """Two studios open at once: each one's Recent survives the other's save, a setting only one of them
    changed keeps that change, and the pinned default model stays listed however full Recent is."""
    from app.settings import MAX_RECENT
    a, b = Settings.load(tmp_path), Settings.load(tmp_path)
    a.add_recent(str(tmp_path / "a.pkl"))
    a.output_dir = str(tmp_path / "out")
    a.save(tmp_path)
    b.add_recent(str(tmp_path / "b.pkl"))
    b.window_size = (1000, 700)
    b.save(tmp_path)
    merged = Settings.load(tmp_path)
    assert merged.recent[:2] == [str(tmp_path / "b.pkl"), str(tmp_path / "a.pkl")]
    assert merged.output_dir == str(tmp_path / "out") and merged.window_size == (1000, 700)
    for i in range(MAX_RECENT + 2):
        merged.add_recent(str(tmp_path / f"m{i}.pkl"))
    merged.pinned = str(tmp_path / "default_model.ckpt")
    assert len(merged.recent) == MAX_RECENT and merged.recent_entries()[-1] == merged.pinned
    (tmp_path / "settings.json").write_text('{"recent": 3, "window_size": "big"}')
    broken = Settings.load(tmp_path)
    assert broken.recent == [] and broken.window_size is None


def test_window_fits_the_work_area():
    """A saved window size larger than the screen shrinks to its work area, decorations included, and is
    centred in it; without a saved size the window takes most of the screen."""
    from app.layout import FIRST_START_SHARE, fit_to_workarea
    assert fit_to_workarea((1920, 1200), (0, 0, 1280, 720)) == (0, 0, 1280, 720)
    assert fit_to_workarea((1920, 1200), (0, 27, 1280, 693), (2, 30, 2, 2)) == (2, 57, 1276, 661)
    assert fit_to_workarea((800, 600), (100, 0, 1920, 1080)) == (100 + 560, 240, 800, 600)
    x, y, w, h = fit_to_workarea(None, (0, 0, 1920, 1080))
    assert (w, h) == (round(1920 * FIRST_START_SHARE), round(1080 * FIRST_START_SHARE))
    assert fit_to_workarea(None, (0, 0, 1280, 720)) == (0, 0, 1280, 720)     # small screens: all of it


def test_actions_run_by_type_and_wait_for_their_model(snapshot_pkl, tmp_path, caplog):
    """Without a window: of two opens queued together only the newer loads; actions queued before any model
    exists wait for it (the inversion's image) or say why they cannot run (an export); then two exports run
    one after the other, a plane inspection beside them, and an action nothing handles is one error line."""
    from app.actions import Action, ComputePCA, InspectPlanes, OpenInvertImage, OpenModel, SaveLatent
    from core.latents import load_latent
    session = make_session(tmp_path)
    s = session.state
    s.actions += [SaveLatent(tmp_path / "early.npz", {}, s.latent.latent(), (0.0,) * 25),
                  OpenInvertImage(str(tmp_path / "missing.png")), OpenModel(str(tmp_path / "gone.pkl")),
                  OpenModel(str(snapshot_pkl))]
    session.tick(0.0)
    assert "no model loaded" in s.status and s.status_is_error
    assert [type(a) for a in s.actions] == [OpenInvertImage], "the image must wait for the model"

    def run_until(done, what: str) -> None:
        start = time.monotonic()
        while not done():
            assert time.monotonic() - start < 120, f"{what}: {s.status}"
            session.tick(0.05)
            time.sleep(0.02)
    try:
        run_until(lambda: not session.busy, "the model and the image")
        assert s.model.path == str(snapshot_pkl) and "gone.pkl" not in caplog.text, "the superseded open ran"
        assert s.invert.target is None and "missing.png" in s.invert.target_info
        camera = tuple(s.camera.label()[0].tolist())
        latent = dataclasses.replace(s.latent.latent(), seed=4)
        s.actions += [SaveLatent(tmp_path / "a.npz", {}, latent, camera), ComputePCA(),
                      InspectPlanes(("k",), latent, 0)]
        session.tick(0.0)
        assert [type(a) for a in s.actions] == [ComputePCA], "one engine action at a time, in order"
        run_until(lambda: not session.busy, "the queued actions")
        assert s.pca_ready and (tmp_path / "a.npz").exists()
        assert s.planes[0] == ("k",) and isinstance(s.planes[1], dict)
        assert torch.equal(load_latent(tmp_path / "a.npz").camera, torch.tensor(camera))

        class Unknown(Action):
            pass
        s.actions.append(Unknown())
        session.tick(0.0)
        assert s.status_is_error and "Unknown" in s.status and not s.actions
    finally:
        session.close()
