"""RenderEngine caches and RenderWorker latest-wins behaviour, on the fixture generator."""
from __future__ import annotations

import dataclasses
import threading

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
    assert (engine.ws(latent) - case["ws"]).abs().max() <= 1e-5  # round-off differs between CPUs

    req = RenderRequest(latent=latent, camera=tuple(case["c"][0].tolist()))
    first = engine.render(req)
    assert first.error is None and first.cache == {"ws": True, "planes": False}
    assert (first.image - case["image"][0]).abs().max() <= 1e-4
    assert ((first.depth - case["image_depth"][0]).abs() * first.opacity).max() <= 1e-4  # see test_parity
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
        self.started = threading.Event()
        self.release = threading.Event()

    def render(self, req):
        self.started.set()
        self.release.wait(5)
        self.rendered.append(req.generation)
        from core.engine import Frame
        return Frame(request=req)


def test_worker_latest_request_wins():
    engine = SlowEngine()
    worker = RenderWorker(engine)
    try:
        worker.submit(RenderRequest(generation=1))
        assert engine.started.wait(10)  # generation 1 is now in flight
        for g in range(2, 6):
            worker.submit(RenderRequest(generation=g))  # each replaces the previous pending one
        assert worker.busy
        engine.release.set()
        assert worker.wait_idle(10)
        assert engine.rendered == [1, 5]
        assert worker.latest().request.generation == 5
    finally:
        worker.close()
