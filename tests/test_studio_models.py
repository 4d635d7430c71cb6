"""Switching models in a running studio: the original-format fixture pickle (14 ws, 256 px output,
4x SR) and the default model (10 ws, 128 px, 2x SR), with style mixing, W directions, interpolation
and a cutoff on. No switch may raise or show the previous model's frame as current."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import studio_helpers

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "assets" / "default_model.ckpt"
WAIT_S = 120


@pytest.fixture(scope="module")
def studio(display, snapshot_pkl, tmp_path_factory):
    from app.studio import Studio
    s = Studio(str(snapshot_pkl), settings_dir=tmp_path_factory.mktemp("settings"), window_size=(1000, 700))
    s.state.view.sample_scale = 0.5
    yield s
    s.close()


def run_until(studio, condition, what: str) -> None:
    studio_helpers.run_until(studio, condition, what, WAIT_S)


def settle(studio) -> np.ndarray:
    return studio_helpers.settle(studio, WAIT_S)


def viewport_during_switch(studio, path: str, keep_view: bool, tmp_path: Path) -> np.ndarray:
    """Ask for another model and capture the viewport in the same UI frame (the load has started)."""
    from PIL import Image
    shot = tmp_path / f"switch-{time.monotonic_ns()}.png"
    from app.actions import OpenModel, SaveViewportPNG
    studio.state.actions += [OpenModel(path, keep_view), SaveViewportPNG(str(shot))]
    studio.step()
    assert studio.state.model.loading == path, "the load finished within one frame: cannot check the greying"
    return np.asarray(Image.open(shot)).astype(np.int16)


def check_frame(studio, output_px: int, num_ws: int) -> None:
    frame = studio.latest_frame
    assert frame.error is None, frame.error
    assert frame.image.shape[-1] == output_px and studio.state.model.num_ws == num_ws
    assert [p.last_error for p in studio.panels if p.last_error] == []
    assert not studio.state.status_is_error, studio.state.status
    lat = studio.state.latent
    assert len(lat.mix_layers) == num_ws
    lo, hi = lat.direction_layers
    assert (lo, hi) == (0, 0) or 0 <= lo < hi <= num_ws
    assert 0 <= lat.cutoff <= num_ws


def test_switch_between_models_with_mixing_and_directions(studio, snapshot_pkl, tmp_path):
    settle(studio)
    lat = studio.state.latent
    lat.mix_enabled, lat.mix_layers = True, [i >= 3 for i in range(14)]   # ws 10..13 exist only here
    lat.directions, lat.direction_layers = [1.5] + [0.0] * 7, (4, 14)
    lat.cutoff, lat.interp_enabled, lat.interp_t = 14, True, 0.3
    before = settle(studio)
    check_frame(studio, 256, 14)

    during = viewport_during_switch(studio, str(DEFAULT_MODEL), False, tmp_path)
    assert studio.display.stale
    assert during.shape == before.shape and during.mean() < 0.6 * before.mean(), "old frame not greyed"
    settle(studio)
    check_frame(studio, 128, 10)
    assert lat.directions == [0.0] * 8, "another model's principal directions kept"
    assert lat.direction_layers == (0, 0) and lat.cutoff == 10

    # a training snapshot of another architecture hot-reloads over it (keeps view and latent)
    lat.mix_layers, lat.direction_layers, lat.directions = [i >= 2 for i in range(10)], (2, 10), [1.0] * 8
    viewport_during_switch(studio, str(snapshot_pkl), True, tmp_path)
    settle(studio)
    check_frame(studio, 256, 14)
    assert lat.direction_layers == (2, 10) and lat.mix_enabled and lat.interp_enabled
