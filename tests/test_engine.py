"""RenderEngine caches and RenderWorker latest-wins behaviour, on the fixture generator."""
from __future__ import annotations

import dataclasses
import threading
import time

import torch

from core.cameras import OrbitCamera
from core.engine import Latent, RenderEngine, RenderRequest
from core.worker import RenderWorker


def label(yaw: float = 0.0) -> tuple[float, ...]:
    cam = OrbitCamera(yaw=yaw, radius=2.7, pivot=(0.0, 0.0, 0.2))
    return tuple(cam.label()[0].tolist())


def test_engine_matches_generator_and_caches(small_G, cases):
    engine = RenderEngine(small_G, device="cpu")
    case = cases["per_seed"][0]
    latent = Latent(seed=0, psi=float(case["truncation_psi"]), cutoff=int(case["truncation_cutoff"]))
    # the engine's conditioning camera is the original tools' frontal camera
    assert torch.equal(engine.conditioning_label(latent), case["c_cond"])
    assert torch.equal(engine.ws(latent), case["ws"])

    req = RenderRequest(latent=latent, camera=tuple(case["c"][0].tolist()))
    first = engine.render(req)
    assert first.error is None and first.cache == {"ws": True, "planes": False}
    assert (first.image - case["image"][0]).abs().max() <= 1e-4
    assert torch.equal(first.depth, case["image_depth"][0])
    second = engine.render(RenderRequest(latent=latent, camera=label(0.3)))  # camera-only change
    assert second.cache == {"ws": True, "planes": True}
    assert not torch.equal(second.image, first.image)
    assert set(first.timings) == {"mapping", "backbone", "rendering", "superresolution", "total"}


def test_raw_preview_and_sample_scale(small_G):
    engine = RenderEngine(small_G, device="cpu")
    frame = engine.render(RenderRequest(camera=label(), resolution=48, sample_scale=0.5, superresolution=False))
    assert frame.error is None and frame.image is None
    assert frame.image_raw.shape == (3, 48, 48) and frame.depth.shape == (1, 48, 48)
    assert small_G.neural_rendering_resolution == 64  # a preview does not change the model's default


def test_latent_edits_change_ws(small_G):
    engine = RenderEngine(small_G, device="cpu")
    base = engine.ws(Latent(seed=1))
    other = engine.ws(Latent(seed=2))
    mixed = engine.ws(Latent(seed=1, mix_seed=2, mix_layers=(10, 11, 12, 13)))
    assert torch.equal(mixed[:, :10], base[:, :10]) and torch.equal(mixed[:, 10:], other[:, 10:])
    half = engine.ws(Latent(seed=1, interp_seed=2, interp_t=0.5))
    assert torch.allclose(half, (base + other) / 2, atol=1e-6)
    dirs, std = engine.w_directions(4)
    assert torch.allclose(dirs @ dirs.T, torch.eye(4), atol=1e-4) and bool((std[:-1] >= std[1:]).all())
    edited = engine.ws(Latent(seed=1, directions=((0, 2.0),), direction_layers=(0, 7)))
    assert torch.allclose(edited[:, :7] - base[:, :7], (2.0 * std[0] * dirs[0]).expand(1, 7, -1), atol=1e-5)
    assert torch.equal(edited[:, 7:], base[:, 7:])


def test_bf16_precision_is_close_but_not_identical(small_G):
    engine = RenderEngine(small_G, device="cpu")
    req = RenderRequest(camera=label(0.2), superresolution=False)
    fp32 = engine.render(req)
    bf16 = engine.render(dataclasses.replace(req, precision="bf16"))
    assert bf16.error is None and bf16.image_raw.dtype == torch.float32
    diff = (bf16.image_raw - fp32.image_raw).abs()
    assert 0 < diff.mean() < 0.05


def test_errors_are_returned_not_raised(small_G):
    frame = RenderEngine(small_G, device="cpu").render(RenderRequest(camera=(1.0, 2.0)))
    assert frame.error and "25 numbers" in frame.error


class SlowEngine:
    """Stands in for RenderEngine: records what it renders, takes a while per frame."""

    def __init__(self):
        self.rendered: list[int] = []
        self.release = threading.Event()

    def render(self, req):
        self.release.wait(5)
        self.rendered.append(req.generation)
        from core.engine import Frame
        return Frame(request=req)


def test_worker_latest_request_wins():
    engine = SlowEngine()
    worker = RenderWorker(engine)
    try:
        worker.submit(RenderRequest(generation=1))
        time.sleep(0.1)  # generation 1 is now in flight
        for g in range(2, 6):
            worker.submit(RenderRequest(generation=g))  # each replaces the previous pending one
        assert worker.busy
        engine.release.set()
        assert worker.wait_idle(10)
        assert engine.rendered == [1, 5]
        assert worker.latest().request.generation == 5
    finally:
        worker.close()


def test_noise_modes(small_G):
    engine = RenderEngine(small_G, device="cpu")
    latent = Latent(seed=3)
    const = engine.planes(latent)
    assert torch.equal(const, small_G.planes(engine.ws(latent), noise_mode="const"))
    assert torch.equal(RenderEngine(small_G, device="cpu").planes(latent, "const"), const)  # deterministic
    rng = torch.get_rng_state()
    r1 = engine.planes(latent, "random", noise_seed=1)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    r1_again = RenderEngine(small_G, device="cpu").planes(latent, "random", noise_seed=1)
    r2 = engine.planes(latent, "random", noise_seed=2)
    none = engine.planes(latent, "none")
    assert torch.equal(r1, r1_again)  # reproducible per seed, not a cache hit
    for a, b in ((r1, r2), (r1, const), (none, const), (none, r1)):
        assert (a - b).abs().mean() > 1e-4
    frame = engine.render(RenderRequest(latent=latent, camera=label(), resolution=16, superresolution=False,
                                        noise_mode="bogus"))
    assert frame.error and "noise mode" in frame.error


def test_planes_cache_keys_on_noise_and_precision(small_G):
    engine = RenderEngine(small_G, device="cpu", planes_cache=8)
    base = RenderRequest(latent=Latent(seed=4), camera=label(0.2), resolution=16, superresolution=False)

    def render(**changes):
        frame = engine.render(dataclasses.replace(base, **changes))
        assert frame.error is None
        return frame

    first = render()
    assert first.cache["planes"] is False
    assert render(noise_seed=9).cache["planes"] is True  # the seed only matters for random noise
    rand = render(noise_mode="random", noise_seed=5)
    assert rand.cache["planes"] is False and not torch.equal(rand.image_raw, first.image_raw)
    assert render(noise_mode="random", noise_seed=6).cache["planes"] is False
    again = render(noise_mode="random", noise_seed=5)
    assert again.cache["planes"] is True and torch.equal(again.image_raw, rand.image_raw)
    assert render(noise_mode="none").cache["planes"] is False
    assert render(precision="bf16").cache["planes"] is False
    back = render()
    assert back.cache == {"ws": True, "planes": True} and torch.equal(back.image_raw, first.image_raw)


def test_coarse_and_importance_multipliers_change_sample_counts(small_G):
    """Count the points the decoder sees per pass: coarse = rays x depth_resolution, fine = rays x
    depth_resolution_importance (48 and 48 in the fixture)."""
    engine = RenderEngine(small_G, device="cpu")
    calls: list[int] = []
    hook = small_G.decoder.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[-2]))
    rays = 16 * 16
    try:
        def passes(**scales) -> list[int]:
            calls.clear()
            frame = engine.render(RenderRequest(camera=label(), resolution=16, superresolution=False, **scales))
            assert frame.error is None
            return [c // rays for c in calls]
        assert passes() == [48, 48]
        assert passes(coarse_scale=0.5) == [24, 48]
        assert passes(importance_scale=0.25) == [48, 12]
        assert passes(sample_scale=0.5, coarse_scale=2.0, importance_scale=1.5) == [48, 36]
        assert passes(importance_scale=0.0) == [48]  # no fine pass
    finally:
        hook.remove()
    for bad in ({"coarse_scale": 0.0}, {"importance_scale": -1.0}, {"sample_scale": float("nan")}):
        frame = engine.render(RenderRequest(camera=label(), resolution=16, superresolution=False, **bad))
        assert frame.error and "scale" in frame.error
