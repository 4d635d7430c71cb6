"""Depth views mask the background by opacity (issue #11): render's depth PNGs of the default model
(white background, so rays that hit nothing have arbitrary depth), their --no-depth-mask form, the
opaque-background case and the video frames. The studio's depth view: tests/test_studio_input.py."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "assets" / "default_model.ckpt"
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def default_G():
    from core.checkpoint import load_generator
    return load_generator(MODEL, "cpu")


@pytest.fixture(scope="module")
def renders(default_G) -> dict[int, dict[str, np.ndarray]]:
    """Depth and opacity [H, W] per seed at yaw 35, straight from G.render_planes."""
    from core.cameras import frontal_label
    from core.images import seed_ws
    G, out = default_G, {}
    label = frontal_label(G.options, yaw=math.radians(35))
    for seed in SEEDS:
        ws = seed_ws(G, seed, psi=0.7)
        with torch.no_grad():
            r = G.render_planes(G.planes(ws), ws, label, superresolution=False)
        out[seed] = {k: r[f"image_{k}"][0, 0].numpy() for k in ("depth", "opacity")}
    return out


def _render_pngs(out: Path, *flags: str) -> dict[int, np.ndarray]:
    from PIL import Image
    r = subprocess.run([sys.executable, "main.py", "render", str(MODEL), "--seeds", "0-3", "--yaw", "35",
                        "--mode", "image_depth", "--no-grid", "--device", "cpu", "--out", str(out), *flags],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {s: np.asarray(Image.open(out / f"seed{s:04d}_yaw+35_pitch+0_image_depth.png")) for s in SEEDS}


def test_render_depth_png_masks_the_background(renders, tmp_path):
    pngs = _render_pngs(tmp_path)
    for seed, png in pngs.items():
        fg = renders[seed]["opacity"] >= 0.5
        assert png.shape == fg.shape + (3,) and (png == png[..., :1]).all(), "grey"
        assert 0.1 < fg.mean() < 0.9, f"seed {seed}: the default model has both subject and background"
        grey = png[..., 0]
        assert (grey[~fg] == 0).all(), f"seed {seed}: background is not uniformly far (black)"
        assert grey[fg].min() == 0 and grey[fg].max() == 255, f"seed {seed}: foreground does not span 0..255"
        depth = renders[seed]["depth"]
        near = np.unravel_index(np.where(fg, depth, np.inf).argmin(), depth.shape)
        assert grey[near] == 255, f"seed {seed}: the nearest foreground pixel is not the brightest"


def test_no_depth_mask_is_the_old_min_max_over_every_pixel(renders, tmp_path):
    pngs = _render_pngs(tmp_path, "--no-depth-mask")
    for seed, png in pngs.items():
        d = renders[seed]["depth"]
        old = ((d.max() - d) / (d.max() - d.min()) * 255 + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(png[..., 0], old, err_msg=f"seed {seed}")


@pytest.mark.parametrize("colormap", [False, True])
def test_opaque_or_empty_opacity_gives_the_unmasked_image(colormap):
    from core.imaging import depth_to_uint8
    depth = 2.5 + torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    plain = depth_to_uint8(depth, colormap)
    np.testing.assert_array_equal(depth_to_uint8(depth, colormap, torch.ones(1, 1, 24, 24)), plain)
    np.testing.assert_array_equal(depth_to_uint8(depth, colormap, torch.full((1, 24, 24), 0.49)), plain)
    np.testing.assert_array_equal(depth_to_uint8(depth, colormap, None), plain)


def test_masked_colormap_draws_the_background_in_the_far_colour():
    from core.imaging import depth_to_uint8
    depth = torch.linspace(2.0, 3.0, 64).reshape(1, 8, 8)
    opacity = torch.ones(1, 8, 8)
    opacity[0, :, :2] = 0.2                                    # the nearest two columns are background
    rgb = depth_to_uint8(depth, True, opacity)
    far = depth_to_uint8(depth, True)[-1, -1]                   # the farthest pixel: the far end's colour
    assert (rgb[:, :2] == far).all()
    assert (rgb[0, 2] == depth_to_uint8(depth, True)[0, 0]).all()  # nearest foreground = near colour
    with pytest.raises(ValueError, match="does not match"):
        depth_to_uint8(depth, True, torch.ones(1, 4, 4))


@pytest.mark.parametrize("mask", [True, False])
def test_depth_video_frames_follow_the_mask(default_G, renders, mask):
    """`video --mode image_depth` (seeds) and the studio's export (engine) draw depth as render does."""
    from core import video as V
    from core.cameras import frontal_label
    from core.engine import Latent, RenderEngine, RenderRequest
    from core.imaging import depth_to_uint8
    G = default_G
    label = frontal_label(G.options, yaw=math.radians(35))
    opts = V.VideoOptions(frames=1, mode="image_depth", depth_mask=mask)
    seeds_frame = next(V.video_frames(G, [0], label, opts))
    engine = RenderEngine(G, device="cpu")
    request = RenderRequest(latent=Latent(seed=0, psi=0.7))
    engine_frame = next(V.engine_frames(engine, request, label, "image_depth", depth_mask=mask))
    r = renders[0]
    expected = depth_to_uint8(torch.from_numpy(r["depth"])[None], opacity=r["opacity"] if mask else None)
    for frame in (seeds_frame, engine_frame):
        assert np.abs(frame.astype(int) - expected).max() <= 1
    background = frame[r["opacity"] < 0.5, 0]
    assert (background == 0).all() if mask else background.std() > 5


def test_training_depth_grid_masks_the_background():
    """The trainer's fakes..._depth.png: one range for the batch, over foreground pixels when any."""
    from training.loop import _depth_to_rgb
    depth = torch.linspace(2.0, 3.0, 2 * 36).reshape(2, 1, 6, 6)
    opacity = torch.ones(2, 1, 6, 6)
    opacity[1, :, 3:] = 0.1
    masked = _depth_to_rgb(depth, opacity)
    assert masked.shape == (2, 3, 6, 6)
    assert (masked[1, :, 3:] == -1).all()                        # background: far = black
    fg = masked[:, 0][opacity[:, 0] >= 0.5]
    assert fg.max() == 1 and fg.min() == -1                      # foreground spans the whole range
    torch.testing.assert_close(_depth_to_rgb(depth, torch.ones_like(depth)), _depth_to_rgb(depth))
    torch.testing.assert_close(_depth_to_rgb(depth, torch.zeros_like(depth)), _depth_to_rgb(depth))
