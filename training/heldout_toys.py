"""Held-out inversion targets: toys the default model never saw, rendered by the dataset's own tracer.

Each target is a new toy (a seed far outside any training set's range, one of the six kinds in turn)
seen at a known camera (the inversion's only input) and at novel cameras (ground truth for what the
inversion did not see). Images come from training.synthetic.render with the toys dataset's radius and
focal, so they are exactly what a training image of that object would have been, but the generator
never produced them: the benchmark of real-image inversion (issue #28) and the tests use them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.cameras import camera_label, intrinsics_from_focal
from training.synthetic import SynthSettings, orbit_cameras, render
from training.toys import CATEGORIES, random_toys

TOYS = SynthSettings(family="toys", smooth=0.01)
"""The toys dataset's settings as `dataset synth --family toys` uses them (blending radius 0.01)."""
HELDOUT_SEED = 1_000_000_000
"""First generator seed; training sets draw seeds seed * 1_000_003 + index, far below for any dataset
made with `dataset synth --seed` < 999 (the default model's is 0, 1600 images)."""
ELEVATIONS = (-6.0, 12.0, 25.0, -4.0, 35.0, 18.0, 40.0, -7.0, 8.0, 30.0, -5.0, 22.0)
"""Input-view elevations (degrees above the horizon), by object; inside the toys dataset's -8.6..43."""
NOVEL = ((35.0, 0.0), (-35.0, 0.0), (0.0, None))
"""Novel views: (yaw offset, elevation) in degrees; elevation None = 30 deg away from the input's
(towards the other end of the training range, at most 8 deg below the horizon)."""


@dataclass
class View:
    """One rendered view: image uint8 [R,R,3], camera label [25], yaw and elevation (degrees)."""
    image: np.ndarray
    label: torch.Tensor
    yaw: float
    elevation: float

    def tensor(self) -> torch.Tensor:
        """The image as [1,3,R,R] in [-1,1], as inversion targets are."""
        return torch.from_numpy(self.image).permute(2, 0, 1)[None].float() / 127.5 - 1


@dataclass
class HeldoutTarget:
    """A toy: its kind and seed, the input view and the novel views."""
    name: str
    kind: str
    seed: int
    input: View
    novel: list[View]


def _novel_elevation(e: float) -> float:
    return e + 30.0 if e < 15.0 else max(e - 30.0, -8.0)


def toy_scene(index: int) -> tuple[str, int, dict[str, torch.Tensor], float, float]:
    """Held-out toy `index`: its kind, seed, scene (training.synthetic's dict) and input view's yaw and
    elevation (degrees; the yaw drawn from the seed, the elevation ELEVATIONS[index])."""
    seed = HELDOUT_SEED + index
    gen = torch.Generator().manual_seed(seed)
    kind = CATEGORIES[index % len(CATEGORIES)]
    scene = random_toys(gen, 1, (kind,))
    yaw = float(torch.rand((), generator=gen)) * 360.0 - 180.0
    return kind, seed, scene, yaw, ELEVATIONS[index % len(ELEVATIONS)]


def render_views(scene: dict[str, torch.Tensor], views: list[tuple[float, float]], resolution: int = 128,
                 settings: SynthSettings = TOYS) -> list[View]:
    """The scene seen by the dataset's tracer from each (yaw, elevation) in degrees on the dataset's orbit."""
    yaws = torch.tensor([math.radians(y) for y, _ in views])
    elevs = torch.tensor([math.radians(e) for _, e in views])
    cams = orbit_cameras(yaws, elevs, settings.radius)
    batch = {k: (v.expand(len(views), *v.shape[1:]) if k != "present" else v) for k, v in scene.items()}
    images = render(batch, cams, settings.focal, resolution, settings.smooth).numpy()
    labels = camera_label(cams, intrinsics_from_focal(settings.focal))
    return [View(images[k], labels[k].clone(), (y + 180.0) % 360.0 - 180.0, e) for k, (y, e) in enumerate(views)]


def heldout_toys(count: int = 12, resolution: int = 128, first: int = 0,
                 settings: SynthSettings = TOYS) -> list[HeldoutTarget]:
    """`count` held-out toys (object i is kind i mod 6, yaw drawn from its seed, elevation ELEVATIONS[i])."""
    if settings.family != "toys":
        raise ValueError(f"held-out targets are toys, not {settings.family!r}")
    targets = []
    for i in range(first, first + count):
        kind, seed, scene, yaw, elev = toy_scene(i)
        views = [(yaw, elev)] + [(yaw + dy, _novel_elevation(elev) if de is None else elev + de) for dy, de in NOVEL]
        rendered = render_views(scene, views, resolution, settings)
        targets.append(HeldoutTarget(f"{kind}{i:02d}", kind, seed, rendered[0], rendered[1:]))
    return targets
