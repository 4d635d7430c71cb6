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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image

from core.cameras import camera_label, intrinsics_from_focal, lookat_pose
from core.fileio import atomic_path
from core.progress import Progress

KINDS = ("sphere", "box", "torus", "cylinder")


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
    return dict(kinds=kinds, active=active, present=allowed, centre=centre, size=size, rot=_euler(angle),
                colour=_hsv_to_rgb(hue % 1.0, sat, val))


def _euler(a: torch.Tensor) -> torch.Tensor:
    """XYZ Euler angles [...,3] -> rotation matrices [...,3,3]."""
    cx, cy, cz = torch.cos(a).unbind(-1)
    sx, sy, sz = torch.sin(a).unbind(-1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h[..., None] * 6) % 6
    return v[..., None] - v[..., None] * s[..., None] * torch.clamp(torch.minimum(kk, 4 - kk), 0, 1)


def _prim_sdf(p: torch.Tensor, kinds: torch.Tensor, size: torch.Tensor, present: tuple[int, ...]
              ) -> torch.Tensor:
    """Signed distances of local points p [..., 3] for primitive kinds [...] and sizes [..., 3].

    Only the kinds in `present` are evaluated (the others cannot occur in this dataset).
    """
    d = None
    for kind in present:
        if kind == 0:
            dk = p.norm(dim=-1) - size[..., 0]
        elif kind == 1:
            q = p.abs() - size * 0.8
            dk = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0) - 0.02
        elif kind == 2:
            ring = torch.stack([p[..., [0, 2]].norm(dim=-1) - size[..., 0], p[..., 1]], -1)
            dk = ring.norm(dim=-1) - 0.35 * size[..., 1]
        else:
            q = torch.stack([p[..., [0, 2]].norm(dim=-1) - size[..., 0] * 0.8, p[..., 1].abs() - size[..., 1]], -1)
            dk = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
        d = dk if d is None else torch.where(kinds == kind, dk, d)
    return d


def scene_sdf(x: torch.Tensor, scene: dict[str, torch.Tensor], smooth: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """World points x [B,P,3] -> (distance [B,P], colour [B,P,3]) by smooth union of the primitives."""
    local = torch.einsum("bkij,bpkj->bpki", scene["rot"].transpose(-1, -2),
                         x[:, :, None, :] - scene["centre"][:, None])
    kinds = scene["kinds"][:, None].expand(local.shape[:3])
    size = scene["size"][:, None].expand(local.shape)
    d = _prim_sdf(local, kinds, size, tuple(int(k) for k in scene["present"]))
    if d.shape[-1] == 1:
        return d[..., 0], scene["colour"][:, None, 0].expand(*d.shape[:2], 3)
    d = torch.where(scene["active"][:, None], d, torch.full_like(d, 10.0))
    # Smooth minimum (log-sum-exp) and colour weights from the same soft assignment.
    w = torch.softmax(-d / smooth, dim=-1)
    dist = -smooth * torch.logsumexp(-d / smooth, dim=-1)
    colour = torch.einsum("bpk,bkc->bpc", w, scene["colour"])
    return dist, colour


def render(scene: dict[str, torch.Tensor], cam2world: torch.Tensor, focal: float, resolution: int,
           smooth: float, steps: int = 32) -> torch.Tensor:
    """Sphere-trace the scenes -> uint8 images [B,R,R,3] on a white background."""
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
        dist, _ = scene_sdf(origin + depth[..., None] * dirs, scene, smooth)
        depth = depth + dist.clamp(min=-0.05) * 0.9
    x = origin + depth[..., None] * dirs
    dist, colour = scene_sdf(x, scene, smooth)
    hit = hit_bound & (dist.abs() < 4e-3) & (depth < 4.0)
    normal = _normals(x, scene, smooth)
    light = torch.nn.functional.normalize(torch.tensor([0.5, 0.8, 0.6]), dim=0)
    diffuse = (normal @ light).clamp(min=0)
    fill = (normal[..., 1] * 0.5 + 0.5) * 0.25
    shaded = colour * (0.3 + 0.6 * diffuse + fill)[..., None]
    img = torch.where(hit[..., None], shaded.clamp(0, 1), torch.ones_like(shaded))
    return (img * 255 + 0.5).to(torch.uint8).reshape(b, r, r, 3)


def _normals(x: torch.Tensor, scene: dict[str, torch.Tensor], smooth: float) -> torch.Tensor:
    """Tetrahedral finite-difference SDF gradient, normalised."""
    e = 1e-3
    k = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=x.dtype)
    n = sum(kk * scene_sdf(x + e * kk, scene, smooth)[0][..., None] for kk in k)
    return torch.nn.functional.normalize(n, dim=-1)


def sample_cameras(gen: torch.Generator, count: int, settings: SynthSettings) -> torch.Tensor:
    """Uniform yaw in yaw_range and elevation in pitch_range (uniform on the sphere band) -> cam2world."""
    y0, y1 = settings.yaw_range
    yaw = y0 + (y1 - y0) * torch.rand(count, generator=gen)
    s0, s1 = math.sin(settings.pitch_range[0]), math.sin(settings.pitch_range[1])
    pitch = torch.asin(s0 + (s1 - s0) * torch.rand(count, generator=gen))
    return orbit_cameras(yaw, pitch, settings.radius)


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
        scenes = [random_scenes(g, 1, settings) for g in gens]
        scene = {k: torch.cat([s[k] for s in scenes]) for k in scenes[0] if k != "present"}
        scene["present"] = scenes[0]["present"]
        cams = torch.cat([sample_cameras(g, 1, settings) for g in gens])
        images = render(scene, cams, settings.focal, resolution, settings.smooth).numpy()
        label = camera_label(cams, intrinsics_from_focal(settings.focal))
        for i in range(n):
            idx = start + i
            rel = f"{idx // 1000:05d}/img{idx:08d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / rel) as tmp:
                Image.fromarray(images[i]).save(tmp, format="PNG", compress_level=1)
            labels.append([rel, [round(float(v), 7) for v in label[i]]])
        if progress is not None:
            progress.update(start + n, count, f"{torch_threads} threads")
    meta = {"labels": labels, "synthetic": {**asdict(settings), "seed": seed, "resolution": resolution}}
    with atomic_path(out / "dataset.json") as tmp:
        tmp.write_text(json.dumps(meta))
    return out
