"""Procedural posed dataset: coloured SDF primitives rendered from cameras on a sphere.

Each object is a smooth union of one to three primitives (sphere, box, torus, cylinder) with its own
colour, centred in the cube [-0.5, 0.5]^3 (box_warp 1). Images are sphere-traced in batches with
torch, shaded with a fixed world-space light (view-independent, so all views of an object agree) on
a white background, and written in the EG3D dataset format (PNG files + dataset.json, ref §5.1)
with OpenCV cam2world + normalised intrinsics labels (ref §4.1).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from core.cameras import camera_label, intrinsics_from_focal, lookat_pose
from core.fileio import atomic_path
from core.progress import Progress, report
from training.heads import head_sdf, random_heads
from training.primitives import KINDS, euler_rotation, scene_sdf
from training.toys import random_toys

SDF = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SynthSettings:
    """Camera distribution and scene family of a synthetic dataset (stored in dataset.json)."""
    radius: float = 1.8
    focal: float = 1.8
    """Normalised focal length fx/W (= fy/H); principal point at the image centre."""
    yaw_range: tuple[float, float] = (-math.pi, math.pi)
    """Azimuth around +y; 0 = camera on +z looking at the origin."""
    pitch_range: tuple[float, float] = (-0.15, 0.75)
    """Elevation above the horizon in radians (positive = camera above the object)."""
    max_prims: int = 2
    kinds: tuple[str, ...] = ("sphere", "box", "torus", "cylinder")
    """Primitive family to draw from."""
    smooth: float = 0.08
    """Smooth-union blending radius."""
    family: str = "primitives"
    """'primitives' (random unions of the kinds above), 'toys' (training.toys) or 'heads' (training.heads);
    toys and heads stand in a canonical frame with a clear front."""
    yaw_std: float | None = None
    """Normal yaw distribution with this std, truncated to yaw_range (None: uniform over yaw_range)."""


def orbit_cameras(yaw: torch.Tensor, elevation: torch.Tensor, radius: float) -> torch.Tensor:
    """Cameras on a sphere around the origin looking at it -> OpenCV cam2world [B,4,4].

    yaw = azimuth around +y (0 = camera on +z), elevation above the horizon; converted to the
    original LookAt sampler's absolute angles (core.cameras.lookat_pose, ref §4.2).
    """
    return torch.cat([lookat_pose(math.pi / 2 + float(y), math.pi / 2 * (1 - math.sin(float(e))), radius)
                      for y, e in zip(yaw, elevation)])


def random_scenes(gen: torch.Generator, count: int, settings: SynthSettings) -> dict[str, torch.Tensor]:
    """Per object: primitive types, centres, sizes, rotations, colours and an active mask [count, MAX_PRIMS]."""
    n, k = count, settings.max_prims
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    allowed = torch.tensor([KINDS.index(name) for name in settings.kinds])
    kinds = allowed[torch.randint(0, len(allowed), (n, k), generator=gen)]
    nprims = torch.randint(1, settings.max_prims + 1, (n,), generator=gen)
    active = torch.arange(k)[None] < nprims[:, None]
    centre = (u(n, k, 3) - 0.5) * 0.35
    centre[:, 0] *= 0.3  # the first primitive sits near the middle
    size = 0.15 + 0.13 * u(n, k, 3)
    angle = (u(n, k, 3) - 0.5) * math.pi
    hue = u(n, 1) + 0.15 * u(n, k)
    sat, val = 0.55 + 0.4 * u(n, k), 0.6 + 0.4 * u(n, k)
    return dict(kinds=kinds, active=active, present=allowed, centre=centre, size=size, rot=euler_rotation(angle),
                colour=_hsv_to_rgb(hue % 1.0, sat, val))


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * torch.clamp(torch.minimum(kk, 4 - kk), 0, 1)


def render(scene: dict[str, torch.Tensor], cam2world: torch.Tensor, focal: float, resolution: int,
           smooth: float, steps: int = 32, sdf: SDF | None = None) -> torch.Tensor:
    """Sphere-trace the scenes -> uint8 images [B,R,R,3] on a white background.

    `sdf` maps world points [B,P,3] to (distance, colour); default: the primitives of `scene`.
    """
    if sdf is None:
        sdf = lambda x: scene_sdf(x, scene, smooth)  # noqa: E731
    b, r = cam2world.shape[0], resolution
    t = (torch.arange(r) + 0.5) / r
    v, u = torch.meshgrid(t, t, indexing="ij")
    d_cam = torch.stack([(u - 0.5) / focal, (v - 0.5) / focal, torch.ones_like(u)], -1).reshape(1, -1, 3)
    dirs = torch.nn.functional.normalize(d_cam @ cam2world[:, :3, :3].transpose(1, 2), dim=-1)
    origin = cam2world[:, None, :3, 3]
    # Start at the bounding sphere (radius 0.8) to save steps.
    bc = (origin * dirs).sum(-1)
    disc = bc.square() - (origin.square().sum(-1) - 0.64)
    hit_bound = disc > 0
    depth = (-bc - disc.clamp(min=0).sqrt()).clamp(min=0)
    for _ in range(steps):
        dist, _ = sdf(origin + depth[..., None] * dirs)
        depth = depth + dist.clamp(min=-0.05) * 0.9
    x = origin + depth[..., None] * dirs
    dist, colour = sdf(x)
    hit = hit_bound & (dist.abs() < 4e-3) & (depth < 4.0)
    shaded = colour * _soft_light(_normals(x, sdf))[..., None]
    img = torch.where(hit[..., None], shaded.clamp(0, 1), torch.ones_like(shaded))
    return (img * 255 + 0.5).to(torch.uint8).reshape(b, r, r, 3)


def _soft_light(normal: torch.Tensor) -> torch.Tensor:
    """Fixed world-space lighting (view-independent): a key light, a sky/ground fill and ambient."""
    light = torch.nn.functional.normalize(torch.tensor([0.5, 0.8, 0.6]), dim=0)
    diffuse = (normal @ light).clamp(min=0)
    fill = (normal[..., 1] * 0.5 + 0.5) * 0.25
    return 0.3 + 0.6 * diffuse + fill


def _normals(x: torch.Tensor, sdf: SDF) -> torch.Tensor:
    """Tetrahedral finite-difference SDF gradient, normalised."""
    e = 1e-3
    k = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=x.dtype)
    n = sum(kk * sdf(x + e * kk)[0][..., None] for kk in k)
    return torch.nn.functional.normalize(n, dim=-1)


def sample_cameras(gen: torch.Generator, count: int, settings: SynthSettings) -> torch.Tensor:
    """Yaw uniform in yaw_range (or truncated normal with yaw_std), elevation uniform on the sphere band
    of pitch_range -> cam2world."""
    y0, y1 = settings.yaw_range
    u = torch.rand(count, generator=gen)
    if settings.yaw_std:
        # Inverse CDF of the normal restricted to [y0, y1]: no pile-up at the limits, unlike clamping.
        cdf = lambda y: 0.5 * (1 + math.erf(y / (settings.yaw_std * math.sqrt(2))))  # noqa: E731
        a, b = cdf(y0), cdf(y1)
        yaw = settings.yaw_std * math.sqrt(2) * torch.erfinv(2 * (a + (b - a) * u) - 1)
    else:
        yaw = y0 + (y1 - y0) * u
    s0, s1 = math.sin(settings.pitch_range[0]), math.sin(settings.pitch_range[1])
    pitch = torch.asin(s0 + (s1 - s0) * torch.rand(count, generator=gen))
    return orbit_cameras(yaw, pitch, settings.radius)


def _objects(gens: list[torch.Generator], settings: SynthSettings) -> tuple[dict[str, torch.Tensor], SDF]:
    """One random object per generator, batched, and the SDF that renders them."""
    if settings.family == "heads":
        heads = _batch([random_heads(g, 1) for g in gens])
        return heads, lambda x: head_sdf(x, heads)
    if settings.family == "toys":
        scene = _batch([random_toys(g, 1) for g in gens])
    else:
        scene = _batch([random_scenes(g, 1, settings) for g in gens])
    return scene, lambda x: scene_sdf(x, scene, settings.smooth)


def _batch(objects: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-object dicts; 'present' (the primitive kinds in use) is shared, not batched."""
    out = {k: torch.cat([o[k] for o in objects]) for k in objects[0] if k != "present"}
    if "present" in objects[0]:
        out["present"] = objects[0]["present"]
    return out


def write_synthetic_dataset(out: str | Path, count: int, resolution: int, seed: int = 0,
                            settings: SynthSettings = SynthSettings(), batch: int = 16,
                            progress: Progress | None = None) -> Path:
    """Render `count` images of random objects (one object per image) into `out` (EG3D format).

    Deterministic for a given seed and settings, independent of `batch`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    torch_threads = torch.get_num_threads()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        gens = [torch.Generator().manual_seed(seed * 1_000_003 + start + i) for i in range(n)]
        scene, sdf = _objects(gens, settings)
        cams = torch.cat([sample_cameras(g, 1, settings) for g in gens])
        images = render(scene, cams, settings.focal, resolution, settings.smooth, sdf=sdf).numpy()
        label = camera_label(cams, intrinsics_from_focal(settings.focal))
        for i in range(n):
            idx = start + i
            rel = f"{idx // 1000:05d}/img{idx:08d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / rel) as tmp:
                Image.fromarray(images[i]).save(tmp, format="PNG", compress_level=1)
            labels.append([rel, [round(float(v), 7) for v in label[i]]])
        report(progress, start + n, count, f"{torch_threads} threads")
    meta = {"labels": labels, "synthetic": {**asdict(settings), "seed": seed, "resolution": resolution}}
    with atomic_path(out / "dataset.json") as tmp:
        tmp.write_text(json.dumps(meta))
    return out


def write_preview(dataset: str | Path, out: str | Path, count: int = 32, cols: int = 8) -> Path:
    """Contact sheet of the first `count` images of a dataset written by write_synthetic_dataset."""
    import numpy as np

    from core.imaging import contact_sheet, save_png
    dataset = Path(dataset)
    names = [rel for rel, _ in json.loads((dataset / "dataset.json").read_text())["labels"][:count]]
    images = [np.asarray(Image.open(dataset / rel).convert("RGB")) for rel in names]
    return save_png(out, contact_sheet(images, cols))
