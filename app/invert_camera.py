"""The Invert panel's camera check, GL-free: estimate the camera of an image before inverting it, and render
the model at a view so the user can compare it with the target and correct the camera by hand.

The estimate runs training.camera_estimate.estimate_camera on a deep copy of the engine's generator taken
under the engine lock (the viewport renders on meanwhile): on the CPU in a child process that has every core
(run_camera_estimate; the studio leaves one core to its UI thread), on a GPU in the job thread. The view
is the model's mean w (truncation psi 0: what `main.py render --psi 0` draws) rendered through the engine, so it
matches the viewport and `render` pixel for pixel. Angles are degrees with `render`'s meaning (pitch > 0
looks from below).
"""
from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch

from core.cameras import frontal_label
from core.engine import Latent, RenderEngine, RenderRequest
from core.errors import StudioError
from core.progress import Progress, report

MEAN_W = Latent(seed=0, psi=0.0)
"""The mean w: truncation psi 0 maps every seed to the mapping network's tracked average."""


def view_request(engine: RenderEngine, yaw_deg: float, pitch_deg: float) -> RenderRequest:
    """The engine request for the mean w at yaw/pitch (degrees), the checkpoint's FOV."""
    label = frontal_label(engine.base_G.options, None, yaw=math.radians(yaw_deg), pitch=math.radians(pitch_deg))
    return RenderRequest(MEAN_W, camera=tuple(float(x) for x in label[0]))


def render_view(engine: RenderEngine, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """The model's mean w at yaw/pitch (degrees), [R, R, 3] uint8, rendered through the engine and its lock."""
    from core.imaging import to_uint8
    frame = engine.render(view_request(engine, yaw_deg, pitch_deg))
    if frame.error:
        raise StudioError(f"cannot render the view: {frame.error}")
    return to_uint8(frame.image.clamp(-1, 1))


def estimate_view(engine: RenderEngine, image: str | os.PathLike, frame: float | None, progress: Progress,
                  search=None, seed: int = 0) -> tuple[float, float, np.ndarray]:
    """(yaw, pitch) in degrees that best explain `image` (prepared as the inversion prepares it, `frame`:
    re-framed), and the model's mean w rendered there; `search`: a training.camera_estimate.CameraSearch
    (None: its defaults). Cancel stops it within one rendering pass."""
    from training.camera_estimate import CameraSearch, run_camera_estimate
    from training.image_inversion import prepare_target
    from training.inversion import InversionOptions, mean_w
    with engine.lock:
        G = copy.deepcopy(engine.base_G)
    device = engine.device
    target = prepare_target(G, image, frame)
    fov = G.options.avg_camera_fov
    w_avg, _ = mean_w(G, frontal_label(G.options, fov, device), InversionOptions.w_avg_samples,
                      torch.Generator().manual_seed(seed))   # as the inversion's
    search = search or CameraSearch()
    phases = [0, 3 + len(getattr(search, "spacings", ()))]

    def tick(phase: str, views: int, loss: float) -> None:
        phases[0] += 1
        phases[1] = max(phases[1], phases[0] + 1)
        report(progress, phases[0], phases[1], f"{phase}: {views} views, best loss {loss:.4f}")

    report(progress, 0, phases[1], "camera search")
    yaw, pitch = run_camera_estimate(G, target.image.to(device), w_avg, fov, search, seed, tick, progress)
    yaw_deg, pitch_deg = (float(np.float32(math.degrees(a))) for a in (yaw, pitch))   # as sliders hold them
    report(progress, phases[1], phases[1], "rendering the view")
    return yaw_deg, pitch_deg, render_view(engine, yaw_deg, pitch_deg)

