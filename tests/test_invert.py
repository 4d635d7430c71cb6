"""GAN inversion: projection quality on unseen views, camera estimate, PTI locality, latent.npz round
trips through render / mesh / video, image and camera inputs, one-line errors. Default (tiny) model."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"  # tests/data/README.md: why not the default model


def _main(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Images in [-1,1] -> PSNR (dB) on the [0,255] scale."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) * 127.5).square().mean())
    return 10 * math.log10(255 ** 2 / mse)


def _label(G, yaw_deg: float, pitch_deg: float = 0.0) -> torch.Tensor:
    from core.cameras import frontal_label
    return frontal_label(G.options, None, yaw=math.radians(yaw_deg), pitch=math.radians(pitch_deg))


@pytest.fixture(scope="module")
def G():
    from core.checkpoint import load_generator
    return load_generator(MODEL, "cpu")


@pytest.fixture(scope="module")
def quick_search():
    """A camera estimate of few views and steps for the test model."""
    from training.camera_estimate import CameraSearch
    return CameraSearch(yaws=4, elevations=(10.0,), latents=2, candidates=1, keep=1, spacings=(8.0,), moves=2,
                        fine_steps=2, line_offsets=(-8.0,), line_steps=2)


@pytest.fixture(scope="module")
def seed_target(G):
    """Seed 3 rendered at yaw +25 (the inversion's only input) and its true ws."""
    from core.images import seed_ws
    ws = seed_ws(G, 3)
    with torch.no_grad():
        return ws, G.synthesis(ws, _label(G, 25))["image"].clamp(-1, 1)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory, seed_target):
    """`main.py invert` on the target PNG with the camera given (few steps: a round-trip fixture)."""
    from core.imaging import save_png, to_uint8
    d = tmp_path_factory.mktemp("inv")
    save_png(d / "target.png", to_uint8(seed_target[1][0]))
    r = _main("invert", d / "target.png", "--network", MODEL, "--yaw", 25, "--steps", 12, "--tune", 5,
              "--out", d / "out", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "loss: multi-scale pixel MSE only (the checkpoint has no discriminator" in r.stdout
    assert "resized" not in r.stdout and "read 128x128 RGB" in r.stdout
    return d / "out", r


def test_projection_beats_mean_w_on_unseen_views(G, seed_target):
    from training.inversion import InversionOptions, Inverter
    torch.manual_seed(0)  # w noise and density points draw from the global generator
    ws_true, target = seed_target
    res = Inverter(G, target, InversionOptions(steps=40)).run(_label(G, 25)[0])
    with torch.no_grad():
        z = torch.randn(2000, G.z_dim, generator=torch.Generator().manual_seed(1))
        w_avg = G.mapping(z, _label(G, 0).expand(2000, -1)).mean(0, keepdim=True)
        for yaw in (-20, 0):  # views the inversion never saw
            truth = G.synthesis(ws_true, _label(G, yaw))["image"]
            got = G.synthesis(res.ws, _label(G, yaw))["image"]
            base = G.synthesis(w_avg, _label(G, yaw))["image"]
            assert _psnr(got, truth) > _psnr(base, truth) + 4, (yaw, _psnr(got, truth), _psnr(base, truth))
    assert res.ws.shape == (1, G.num_ws, G.w_dim) and not res.interrupted
    assert torch.equal(res.ws[:, 0], res.ws[:, -1])  # W space: one w for every layer


@pytest.mark.parametrize("estimate", [False, True], ids=["camera given", "camera estimated"])
def test_the_result_renders_to_the_loss_reported_for_it(G, seed_target, quick_search, estimate):
    """The ws, noise and camera returned are the ones that scored best: they used to be saved after the
    optimiser's step had already moved them (the camera even by reference, so always the last one)."""
    from training.inversion import InversionOptions, Inverter
    torch.manual_seed(0)
    opts = InversionOptions(steps=12, camera_search=quick_search)
    inv = Inverter(G, seed_target[1], opts)
    res = inv.run(None if estimate else _label(G, 25)[0])
    with torch.no_grad():  # run() has put the result's noise into inv.G
        again = inv._objective(inv.G.synthesis(res.ws, res.camera[None])).item()
    assert again == pytest.approx(res.loss, rel=1e-4), (again, res.loss)


def test_w_plus_gives_layers_their_own_w(G, seed_target):
    from training.inversion import InversionOptions, Inverter
    res = Inverter(G, seed_target[1], InversionOptions(steps=10, space="w+")).run(_label(G, 25)[0])
    assert not torch.equal(res.ws[:, 0], res.ws[:, -1])
    assert [h[0] for h in res.history] == ["w"] * 5 + ["w+"] * 5


def test_objective_is_zero_exactly_at_the_displayed_target():
    """The image loss (pixels + the checkpoint's D features) of a generated target is 0 at the true latent,
    although that render overshoots [-1,1] and its neural rendering differs from the downsampled image."""
    from core.checkpoint import load_generator
    from core.images import seed_ws
    from training.inversion import Inverter
    from training.perceptual import DiscriminatorFeatures, load_discriminator
    model = ROOT / "assets" / "default_model.ckpt"
    G = load_generator(model, "cpu")
    label = _label(G, 25)
    with torch.no_grad():
        out = G.synthesis(seed_ws(G, 0), label)
        assert out["image"].abs().max() > 1.05  # the case that mattered: an overshooting SR image
        inv = Inverter(G, out["image"].clamp(-1, 1), perceptual=DiscriminatorFeatures(load_discriminator(model)))
        at_truth = inv._objective(inv.G.synthesis(seed_ws(G, 0), label)).item()
        elsewhere = inv._objective(inv.G.synthesis(seed_ws(G, 5), label)).item()
    assert at_truth < 1e-9 and elsewhere > 0.01, (at_truth, elsewhere)


def test_starts_pick_a_latent_that_matches_better_than_the_mean(G, seed_target):
    """invert --starts: the projection's starting latent scores better on the image than the mean w."""
    from training.inversion import InversionOptions, Inverter, mean_w
    label = _label(G, 25)
    inv = Inverter(G, seed_target[1], InversionOptions(starts=8))
    with torch.no_grad():
        w_avg, _ = mean_w(inv.G, label, inv.opts.w_avg_samples, inv.generator)
        start = inv._start_w(w_avg, label)
        score = [inv._objective(inv.G.synthesis(w.expand(-1, G.num_ws, -1), label)).item() for w in (start, w_avg)]
    assert start.shape == w_avg.shape and score[0] < score[1], score


def test_heldout_toys_are_all_kinds_at_the_cameras_their_labels_hold():
    """The real-image benchmark's targets: every kind, views above and below the horizon, and labels that
    read back (as the studio's yaw/pitch) to the yaw and elevation the tracer rendered."""
    from training.camera_estimate import pitch_to_elevation
    from training.heldout_toys import heldout_toys
    from training.inversion import OrbitLabel
    from training.toys import CATEGORIES
    targets = heldout_toys(12, 24)
    assert {t.kind for t in targets} == set(CATEGORIES) and len({t.seed for t in targets}) == 12
    assert min(t.input.elevation for t in targets) < 0 < max(t.input.elevation for t in targets)
    for t in targets:
        for v in [t.input] + t.novel:
            cam = OrbitLabel.from_label(v.label, (0.0, 0.0, 0.0))
            yaw_err = (math.degrees(cam.yaw.item()) - v.yaw + 180) % 360 - 180
            assert abs(yaw_err) < 0.01 and abs(pitch_to_elevation(cam.pitch.item()) - v.elevation) < 0.01
            assert v.image.shape == (24, 24, 3) and (v.image < 200).any()  # the object is in the frame
        assert np.abs(t.novel[2].image.astype(int) - t.input.image).mean() > 0.5  # another elevation
    again = heldout_toys(1, 24, first=5)[0]
    assert np.array_equal(again.input.image, targets[5].input.image)


def test_estimated_camera_is_held_for_the_projection(G, seed_target, quick_search):
    """Without a camera the projection runs at the estimated view (the elevation line's last), inside the
    search's elevation range, and the result renders at the camera it reports."""
    from training.camera_estimate import pitch_to_elevation
    from training.inversion import InversionOptions, Inverter, OrbitLabel
    search = dataclasses.replace(quick_search, elevation_range=(0.0, 20.0))
    torch.manual_seed(0)
    res = Inverter(G, seed_target[1], InversionOptions(steps=3, camera_search=search)).run(None)
    phases = [h[0] for h in res.history]
    views = phases.count("camera views")  # the grid's best view, then 1 or 2 rounds of the pattern search
    assert 2 <= views <= 3, phases
    assert phases == ["camera grid"] + ["camera views"] * views + ["camera elevation"] + ["w"] * 3, phases
    assert 0.0 <= pitch_to_elevation(res.pitch) <= 20.0
    cam = OrbitLabel(res.yaw, res.pitch, res.fov_deg, G.options.avg_camera_radius, G.options.avg_camera_pivot)
    assert torch.allclose(cam().detach()[0], res.camera, atol=1e-5)


def test_refinement_moves_an_off_view_to_the_truth(G, seed_target):
    """A guess 6 deg off in yaw and 4 deg in elevation is pulled back within the pattern's finest spacing:
    the fits that score views hold the camera fixed, so the true view scores lowest."""
    from training.camera_estimate import CameraSearch, pitch_to_elevation, refine_views
    from training.inversion import OrbitLabel, mean_w
    label, target = _label(G, 25), seed_target[1]
    truth = OrbitLabel.from_label(label[0], G.options.avg_camera_pivot)
    elev = pitch_to_elevation(truth.pitch.item())
    w_avg, _ = mean_w(G, label, 2000, torch.Generator().manual_seed(0))
    ticks = []
    yaw, found = refine_views(G, target, w_avg, truth.fov_deg, [(truth.yaw.item() + math.radians(6), elev + 4)],
                              CameraSearch(spacings=(4.0, 2.0), moves=2, fine_steps=40, elevation_range=(-30, 30),
                                           line_steps=0),
                              tick=lambda *a: ticks.append(a))
    err = (math.degrees(yaw - truth.yaw.item()), found - elev)
    assert abs(err[0]) <= 2.5 and abs(err[1]) <= 2.5, err
    assert 3 <= len(ticks) <= 5 and {t[0] for t in ticks} == {"camera views"}, ticks


def test_elevation_line_at_two_yaws_that_the_search_ranks_alike():
    """Issue #28: a held-out lamp seen from 4 deg below the horizon (the dataset's tracer). With two threads the
    search ranks best a view 8 deg above it and 75.5 deg of yaw away (a lamp looks alike all around), where the
    elevation line's 100-step fits put it 4 deg above (the search's 25-step fits cannot read the elevation);
    the line also run at the other yaw the search ranked alike (65.5 deg away, found with one thread) picks
    that yaw's view 2 deg below the horizon."""
    from core.checkpoint import load_generator
    from training.camera_estimate import CameraSearch, refine_views
    from training.heldout_toys import heldout_toys
    from training.inversion import OrbitLabel, mean_w
    G = load_generator(ROOT / "assets" / "default_model.ckpt", "cpu")
    toy = heldout_toys(1, G.img_resolution, first=3)[0]  # lamp03
    truth = OrbitLabel.from_label(toy.input.label, G.options.avg_camera_pivot).yaw.item()
    fov, o = G.options.avg_camera_fov, G.options
    front = OrbitLabel(0.0, 0.0, fov, o.avg_camera_radius, o.avg_camera_pivot)().detach()
    w_avg, _ = mean_w(G, front, 2000, torch.Generator().manual_seed(0))
    two_threads, one_thread = (truth - math.radians(75.5), 8.0), (truth - math.radians(65.5), 10.0)
    line = CameraSearch(spacings=(), line_offsets=(-12.0,))   # 2 elevations a yaw, not 7: a shorter test
    found = refine_views(G, toy.input.tensor(), w_avg, fov, [two_threads, one_thread], line)
    assert found == (one_thread[0], -2.0), found


def test_pivotal_tuning_fits_the_pivot_and_leaves_other_seeds(G, seed_target):
    from core.images import seed_ws
    from training.inversion import InversionOptions, Inverter
    torch.manual_seed(0)
    target = seed_target[1]
    # a small step: on this tiny model the paper's 3e-4 moves other seeds a lot (see BENCHMARKS.md)
    inv = Inverter(G, target, InversionOptions(steps=5, tune_steps=8, tune_lr=5e-5))
    res = inv.run(_label(G, 25)[0])
    tuned = res.G
    with torch.no_grad():
        before = _psnr(inv.G.synthesis(res.ws, _label(G, 25))["image"], target)
        after = _psnr(tuned.synthesis(res.ws, _label(G, 25))["image"], target)
        other = seed_ws(G, 11)
        kept = _psnr(tuned.synthesis(other, _label(G, -30))["image"], inv.G.synthesis(other, _label(G, -30))["image"])
    assert after > before + 0.2, (before, after)
    assert kept > 30, kept
    assert all(not p.requires_grad for p in tuned.parameters())


def test_pivotal_tuning_reproduces_a_toy_the_model_never_made():
    """Issue #28, camera given, the default model and its default tuning: a held-out toy (not one of its
    samples) is reproduced far better at the input view than by the W pivot, and the views it did not see
    are no worse than the pivot's (the locality and geometry regularisers hold)."""
    from core.checkpoint import load_generator
    from training.heldout_toys import heldout_toys
    from training.inversion import InversionOptions, Inverter
    from training.perceptual import DiscriminatorFeatures, load_discriminator
    model = ROOT / "assets" / "default_model.ckpt"
    G = load_generator(model, "cpu")
    toy = heldout_toys(1, G.img_resolution, first=5)[0]  # snowman05
    features = DiscriminatorFeatures(load_discriminator(model))
    torch.manual_seed(0)
    inv = Inverter(G, toy.input.tensor(), InversionOptions(steps=15, tune_steps=12), features)
    res = inv.run(toy.input.label)

    def scores(G_shown) -> tuple[float, float]:
        with torch.no_grad():
            seen = _psnr(G_shown.synthesis(res.ws, toy.input.label[None])["image"], toy.input.tensor())
            novel = [_psnr(G_shown.synthesis(res.ws, v.label[None])["image"], v.tensor()) for v in toy.novel]
        return seen, float(np.mean(novel))

    (pivot_in, pivot_nv), (tuned_in, tuned_nv) = scores(inv.G), scores(res.G)  # inv.G holds the noise maps
    print(f"snowman05: W pivot {pivot_in:.2f} / {pivot_nv:.2f} dB, tuned {tuned_in:.2f} / {tuned_nv:.2f} dB")
    assert tuned_in >= pivot_in + 4.0, (pivot_in, tuned_in)
    assert tuned_nv >= pivot_nv, (pivot_nv, tuned_nv)


def test_mirror_prior_camera_sees_the_flipped_silhouette(G):
    """The mirror prior's camera, checked against the dataset's own tracer: a toy (symmetric about x=0) seen
    from it shows the input view's silhouette flipped left to right, and not the unflipped one."""
    from training.camera_estimate import foreground_mask
    from training.heldout_toys import TOYS, heldout_toys
    from training.inversion import InversionOptions, Inverter
    from training.synthetic import render
    from training.toys import CATEGORIES, random_toys
    toy = heldout_toys(1, 64, first=0)[0]  # chair00: seen obliquely, its silhouette is not symmetric itself
    label = Inverter(G, toy.input.tensor(), InversionOptions(symmetry_weight=1.0))._mirror(toy.input.label[None])[0]
    scene = random_toys(torch.Generator().manual_seed(toy.seed), 1, (CATEGORIES[0],))
    seen = torch.from_numpy(render(scene, label[:, :16].reshape(1, 4, 4), TOYS.focal, 64, TOYS.smooth).numpy())
    mask = foreground_mask(seen.permute(0, 3, 1, 2).float() / 127.5 - 1)
    flipped = foreground_mask(toy.input.tensor()).flip(-1)
    assert (mask - flipped).abs().mean() < 0.002
    assert (mask - flipped.flip(-1)).abs().mean() > 0.05


def test_mirror_prior_shapes_the_unseen_side_of_a_toy_the_model_never_made():
    """Issue #28, camera given, the default model: with the mirror prior at its default weight a held-out lamp
    seen from below (images from the dataset's tracer) is reconstructed better at the views the inversion
    did not see (lamp03: +1.3 dB here; all 12 held-out toys: BENCHMARKS.md)."""
    from core.checkpoint import load_generator
    from training.heldout_toys import heldout_toys
    from training.inversion import InversionOptions, Inverter
    from training.perceptual import DiscriminatorFeatures, load_discriminator
    model = ROOT / "assets" / "default_model.ckpt"
    G = load_generator(model, "cpu")
    toy = heldout_toys(1, G.img_resolution, first=3)[0]  # lamp03
    features = DiscriminatorFeatures(load_discriminator(model))
    novel = {}
    for weight in (0.0, InversionOptions.symmetry_weight):
        torch.manual_seed(0)
        opts = InversionOptions(steps=40, tune_steps=30, symmetry_weight=weight)
        res = Inverter(G, toy.input.tensor(), opts, features).run(toy.input.label)
        with torch.no_grad():
            novel[weight] = float(np.mean([_psnr(res.G.synthesis(res.ws, v.label[None])["image"], v.tensor())
                                           for v in toy.novel]))
    without, with_prior = novel.values()
    print(f"lamp03 novel views: {without:.2f} dB without the mirror prior, {with_prior:.2f} dB with it")
    assert with_prior >= without + 0.5, novel


def test_cancel_keeps_the_best_result_so_far(G, seed_target):
    from core.progress import Progress
    from training.inversion import InversionOptions, Inverter

    class StopAfter(Progress):
        def update(self, done, total, message=""):
            if done == 5:
                self.cancel()
            super().update(done, total, message)

    res = Inverter(G, seed_target[1], InversionOptions(steps=50, tune_steps=10), progress=StopAfter()).run(
        _label(G, 25)[0])
    assert res.interrupted and len(res.history) == 5 and res.G is None
    assert res.loss == min(h[2] for h in res.history)


def test_stop_during_the_camera_estimate_ends_the_run(G, seed_target, quick_search):
    """Stop while the camera is estimated (before any projection step): nothing to keep, the run says so
    with KeyboardInterrupt (the front ends report 'stopped before the first step')."""
    from core.progress import Progress
    from training.inversion import InversionOptions, Inverter

    class StopAfter(Progress):
        def update(self, done, total, message=""):
            if done == 2:  # the grid, then the first batch of views
                self.cancel()
            super().update(done, total, message)

    inv = Inverter(G, seed_target[1], InversionOptions(steps=20, camera_search=quick_search), progress=StopAfter())
    with pytest.raises(KeyboardInterrupt):
        inv.run(None)
    assert [h[0] for h in inv.history] == ["camera grid", "camera views"]


def test_latent_round_trips_through_render_mesh_video(G, inverted, tmp_path):
    import imageio_ffmpeg
    import trimesh
    from PIL import Image

    from core.latents import load_latent
    out, _ = inverted
    latent = load_latent(out / "latent.npz")
    assert latent.ws.shape == (1, G.num_ws, G.w_dim) and latent.ws.dtype == torch.float32
    assert torch.allclose(latent.camera, _label(G, 25)[0]) and latent.settings["camera"] == "given"
    assert latent.settings["steps"] == 12 and latent.settings["tune"] == 5 and latent.noise
    # render --latent at the fitted camera reproduces compare.png's reconstruction tile exactly
    r = _main("render", out / "tuned.ckpt", "--latent", out / "latent.npz", "--yaw", 25, "--out", tmp_path / "r",
              "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rendered = np.asarray(Image.open(tmp_path / "r" / "latent_yaw+25_pitch+0_image.png"))
    compare = np.asarray(Image.open(out / "compare.png"))
    res = G.img_resolution
    assert compare.shape[1] == 5 * res + 4 * 4
    # the same pixels up to one level: compare.png's camera is rebuilt from the fitted yaw/pitch, render's
    # from --yaw; the poses differ by float32 round-off, which can move a pixel by one level on some CPUs
    assert np.abs(rendered.astype(int) - compare[:res, res + 4:2 * res + 4]).max() <= 1
    # without the tuned weights it is a different (untuned) image of the same latent
    r = _main("render", MODEL, "--latent", out / "latent.npz", "--yaw", 25, "--out", tmp_path / "u", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    untuned = np.asarray(Image.open(tmp_path / "u" / "latent_yaw+25_pitch+0_image.png"))
    assert 0 < np.abs(untuned.astype(int) - rendered).mean() < 20
    r = _main("mesh", out / "tuned.ckpt", "--latent", out / "latent.npz", "--res", 48, "--out", tmp_path / "m",
              "--device", "cpu")
    assert r.returncode == 0, r.stderr
    mesh = trimesh.load(tmp_path / "m" / "latent.ply", force="mesh", process=False)
    assert len(mesh.faces) > 100
    r = _main("video", out / "tuned.ckpt", "--latent", out / "latent.npz", "--frames", 3, "--out",
              tmp_path / "v.mp4", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "v.mp4"))[0] == 3
    assert np.load(tmp_path / "v.cameras.npy").shape == (3, 25)


def test_save_load_latent_is_exact(tmp_path):
    from core.latents import SavedLatent, load_latent, save_latent
    ws = torch.randn(1, 10, 512)
    noise = {"backbone.synthesis.b4.conv1.noise_const": torch.randn(4, 4)}
    save_latent(tmp_path / "l.npz", SavedLatent(ws, torch.arange(25.0), {"space": "w+", "yaw_deg": 3.5}, noise))
    back = load_latent(tmp_path / "l.npz")
    assert torch.equal(back.ws, ws) and torch.equal(back.camera, torch.arange(25.0))
    assert back.settings == {"space": "w+", "yaw_deg": 3.5}
    assert torch.equal(back.noise["backbone.synthesis.b4.conv1.noise_const"], noise[
        "backbone.synthesis.b4.conv1.noise_const"])
    with np.load(tmp_path / "l.npz", allow_pickle=False) as data:
        assert data["ws"].dtype == np.float32 and data["camera"].shape == (25,)


def test_image_preparation(tmp_path):
    from PIL import Image

    from core.latents import prepare_image
    img = np.zeros((60, 100, 4), np.uint8)  # wide: red bands left and right of a green centre square
    img[:, :20, 0] = 255
    img[:, 80:, 0] = 255
    img[:, 20:80, 1] = 255
    img[:, :, 3] = 255
    img[:30, 20:80, 3] = 0  # the top half of the centre is transparent
    Image.fromarray(img, "RGBA").save(tmp_path / "a.png")
    x, how = prepare_image(tmp_path / "a.png", 32, white_back=True)
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert "centre-cropped to 60x60" in how and "composited on white" in how and "resized to 32x32" in how
    rgb = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    assert (rgb[:14] > 250).all()  # transparent top -> white
    np.testing.assert_allclose(rgb[18:], np.broadcast_to([0, 255, 0], rgb[18:].shape), atol=2)  # no red band
    x, _ = prepare_image(tmp_path / "a.png", 32, white_back=False)
    assert (x[0, :, :12] < -0.99).all()  # black background


def test_frame_puts_an_off_centre_object_on_white_at_the_training_scale(tmp_path):
    """A photo of a small object off to one side on a grey backdrop: with --frame the object ends up
    centred on white, its larger side the requested fraction of the frame."""
    from PIL import Image

    from core.latents import prepare_image
    photo = np.full((300, 400, 3), 140, dtype=np.uint8)
    photo[40:100, 250:280] = (200, 30, 30)  # a red object 60 px tall, 30 wide, top right
    Image.fromarray(photo).save(tmp_path / "photo.png")
    x, note = prepare_image(tmp_path / "photo.png", 64, True, frame=0.5)
    img = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    red = (img[..., 0] > 150) & (img[..., 1] < 110)
    ys, xs = np.nonzero(red)
    assert abs(ys.max() - ys.min() + 1 - 32) <= 2 and abs(xs.max() - xs.min() + 1 - 16) <= 2
    assert abs((ys.min() + ys.max()) / 2 - 31.5) <= 1.5 and abs((xs.min() + xs.max()) / 2 - 31.5) <= 1.5
    assert (img[~red] > 240).all() and "object centred" in note


def test_read_camera_formats(tmp_path):
    from core.latents import read_camera
    label = np.arange(25, dtype=np.float32) / 7
    (tmp_path / "c.json").write_text(json.dumps(label.tolist()))
    np.save(tmp_path / "c.npy", label)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["a.png", [0] * 25], ["b.png", label.tolist()]]}))
    for spec in ("c.json", "c.npy", "dataset.json:b.png"):
        np.testing.assert_array_equal(read_camera(str(tmp_path / spec)).numpy(), label)


def test_perceptual_features(snapshot_pkl, tmp_path):
    from training.perceptual import (
        DiscriminatorFeatures,
        VGG16Features,
        feature_distance,
        load_discriminator,
        load_vgg16,
    )
    assert load_discriminator(MODEL) is None  # the shipped model stores G_ema only
    D = load_discriminator(snapshot_pkl)
    feats = DiscriminatorFeatures(D)
    a, b = torch.rand(1, 3, 256, 256) * 2 - 1, torch.rand(1, 3, 256, 256) * 2 - 1
    raw = torch.zeros(1, 3, 64, 64)
    assert float(feature_distance(feats(a, raw), feats(a, raw))) == 0
    assert float(feature_distance(feats(a, raw), feats(b, raw))) > 0
    torch.save(VGG16Features().state_dict(), tmp_path / "vgg.pt")
    vgg = load_vgg16(tmp_path / "vgg.pt")
    assert [f.shape[1] for f in vgg(a)] == [64, 128, 256, 512, 512]


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "tiny", "camera", "both", "vgg", "latent"])
def test_bad_inputs_give_one_line(case, tmp_path):
    from PIL import Image
    img = tmp_path / "img.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(img)
    extra: list = []
    if case == "missing":
        img = tmp_path / "nope.png"
    elif case == "text":
        img = tmp_path / "img.jpg"
        img.write_text("not an image")
    elif case == "truncated":
        data = (tmp_path / "img.png").read_bytes()
        img = tmp_path / "cut.png"
        img.write_bytes(data[:len(data) // 2])
    elif case == "tiny":
        Image.new("RGB", (8, 20)).save(img)
    elif case == "camera":
        (tmp_path / "c.json").write_text("[1, 2, 3]")
        extra = ["--camera", tmp_path / "c.json"]
    elif case == "both":
        extra = ["--camera", tmp_path / "c.json", "--yaw", "10"]
    elif case == "vgg":
        torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "v.pt")
        extra = ["--vgg", tmp_path / "v.pt", "--yaw", "0"]
    if case == "latent":
        r = _main("render", MODEL, "--latent", img, "--out", tmp_path / "o")
    else:
        r = _main("invert", img, "--network", MODEL, "--out", tmp_path / "o", "--steps", 1, *extra)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
