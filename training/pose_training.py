"""Training data and training of training.pose_regressor's PoseNet, and its cache per checkpoint.

Views at known cameras drawn from the pose prior (yaw uniform all around, elevation uniform on the
sphere band `elevations`, as training.synthetic samples a dataset): the checkpoint's own samples
(`generator_views`: random z truncated at psi, the super-resolved image; works for any model) and the
toys dataset's tracer (`tracer_views`: new toys of seeds far from any dataset's and from the held-out
ones). A regressor for a checkpoint is cached under ~/.cache/triplane/ by a hash of its weights, so
the training runs once per model; the default model's ships in assets/ (scripts/train_pose_regressor.py).
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from training.orbit_label import OrbitLabel
from training.pose_regressor import INPUT, PoseNet, pose_input, soft_yaw_target

ELEVATIONS = (-8.6, 43.0)
"""The toys dataset's elevation range (degrees): training.synthetic's pitch_range -0.15..0.75 rad."""
TRACER_SEED = 500_000_000
"""First toy seed of the tracer views: far above dataset seeds (seed * 1_000_003 + i for seeds < 400)
and below the held-out toys' (1_000_000_000 + i)."""
ASSET = Path(__file__).resolve().parent.parent / "assets" / "pose_regressor.pt"


def _prior(gen: torch.Generator, n: int, elevations: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """n (yaw radians, elevation degrees) from the pose prior."""
    yaw = torch.rand(n, generator=gen) * 2 * math.pi - math.pi
    s0, s1 = (math.sin(math.radians(e)) for e in elevations)
    elev = torch.rad2deg(torch.asin(s0 + (s1 - s0) * torch.rand(n, generator=gen)))
    return yaw, elev


def tracer_views(count: int, seed: int = 0, resolution: int = 64, batch: int = 64,
                 elevations: tuple[float, float] = ELEVATIONS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` new toys, one view each, rendered by the toys dataset's tracer at `resolution` ->
    (inputs [N,4,32,32] float16, yaw [N] radians, elevation [N] degrees)."""
    from training.heldout_toys import TOYS
    from training.synthetic import orbit_cameras, render
    from training.toys import random_toys
    gen = torch.Generator().manual_seed(TRACER_SEED + seed)
    yaw, elev = _prior(gen, count, elevations)
    xs = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        scene = random_toys(torch.Generator().manual_seed(TRACER_SEED + seed * 1_000_003 + start), n)
        cams = orbit_cameras(yaw[start:start + n], torch.deg2rad(elev[start:start + n]), TOYS.radius)
        img = render(scene, cams, TOYS.focal, resolution, TOYS.smooth)
        xs.append(pose_input(img.permute(0, 3, 1, 2).float() / 127.5 - 1).half())
    return torch.cat(xs), yaw, elev


def generator_views(G, count: int, seed: int = 0, psi: float = 0.7, batch: int = 32,
                    elevations: tuple[float, float] = ELEVATIONS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` samples of G (random z truncated at psi), one view each, the super-resolved image ->
    (inputs [N,4,32,32] float16, yaw [N] radians, elevation [N] degrees)."""
    from training.camera_estimate import elevation_to_pitch
    o = G.options
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    yaw, elev = _prior(gen, count, elevations)
    white = bool(G.rendering_kwargs.get("white_back", True))
    xs = []
    with torch.no_grad():
        for start in range(0, count, batch):
            n = min(batch, count - start)
            labels = torch.cat([OrbitLabel(float(y), elevation_to_pitch(float(e)), o.avg_camera_fov,
                                           o.avg_camera_radius, o.avg_camera_pivot)().detach()
                                for y, e in zip(yaw[start:start + n], elev[start:start + n])]).to(device)
            z = torch.randn(n, G.z_dim, generator=gen).to(device)
            ws = G.mapping(z, labels, truncation_psi=psi)
            img = G.synthesis(ws, labels)["image"].clamp(-1, 1)
            xs.append(pose_input(img, white).half().cpu())
    return torch.cat(xs), yaw, elev


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift by up to 2 px (edge-replicated) and jitter brightness/contrast of the image channels: a
    photo is never framed or lit exactly like the training views."""
    n = x.shape[0]
    pad = F.pad(x, (2, 2, 2, 2), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
    x = pad[:, :, dy:dy + INPUT, dx:dx + INPUT]
    gain = 1 + 0.15 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    rgb = ((x[:, :3] + 1) * gain - 1).clamp(-1, 1)
    return torch.cat([rgb, x[:, 3:]], dim=1)


def train_pose_net(x: torch.Tensor, yaw: torch.Tensor, elev: torch.Tensor, epochs: int = 30, batch: int = 128,
                   lr: float = 2e-3, seed: int = 0, log: Callable[[str], None] | None = None) -> PoseNet:
    """Fit a PoseNet to inputs x [N,4,32,32], yaw [N] (radians), elevation [N] (degrees)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = PoseNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    target = soft_yaw_target(yaw)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            logits, e = net(_augment(x[idx].float(), gen))
            loss = -(target[idx] * logits.log_softmax(1)).sum(1).mean() + ((e - elev[idx]) / 10).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs} loss {total / len(x):.4f}")
    return net.eval()


def weights_hash(G) -> str:
    """A short hash of G's parameters and buffers: the cache key of its regressor."""
    h = hashlib.sha256()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_pose_net(net: PoseNet, path: str | os.PathLike, key: str, made: str) -> Path:
    """Write the weights (float16) with the model's hash and how they were made, atomically."""
    from core.fileio import atomic_path
    state = {k: v.half() for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "model_hash": key, "made": made}, tmp)
    return Path(path)


def load_pose_net(path: str | os.PathLike, key: str | None = None) -> PoseNet | None:
    """The regressor in `path` (None if missing, or made for another model than `key`)."""
    path = Path(path)
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None and data.get("model_hash") != key:
        return None
    net = PoseNet()
    net.load_state_dict({k: v.float() for k, v in data["state_dict"].items()})
    return net.eval()


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "triplane"


def regressor_for(G, log: Callable[[str], None] | None = None, count: int = 6000, epochs: int = 30) -> PoseNet:
    """The pose regressor for G: the shipped one when G is the default model, else the cached one, else
    trained now on G's own samples (minutes on a CPU) and cached."""
    key = weights_hash(G)
    net = load_pose_net(ASSET, key) or load_pose_net(cache_dir() / f"pose-{key}.pt", key)
    if net is not None:
        return net
    if log is not None:
        log(f"training a pose regressor for this model on {count} of its samples (once; cached)")
    x, yaw, elev = generator_views(G, count)
    net = train_pose_net(x, yaw, elev, epochs, log=log)
    save_pose_net(net, cache_dir() / f"pose-{key}.pt", key, f"generator_views({count}), {epochs} epochs")
    return net
