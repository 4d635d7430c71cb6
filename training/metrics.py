"""Sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN-style); needs no downloaded network.

For each pyramid level (full resolution down to 16x16), random 7x7 patches are taken from real and
generated images, normalised per colour channel within each set, and compared by the mean distance
between sorted projections onto random unit directions. Reported x1000, per level and averaged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_GAUSS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _gauss(img: torch.Tensor) -> torch.Tensor:
    c = img.shape[1]
    k = torch.outer(_GAUSS, _GAUSS).to(img)[None, None].expand(c, 1, 5, 5)
    return F.conv2d(F.pad(img, (2, 2, 2, 2), mode="reflect"), k, groups=c)


def laplacian_pyramid(img: torch.Tensor, min_res: int = 16) -> list[torch.Tensor]:
    """[N,C,R,R] -> band-pass levels at R, R/2, ... and the low-pass residual at min_res."""
    levels = []
    while img.shape[-1] > min_res:
        small = _gauss(img)[..., ::2, ::2]
        up = F.interpolate(small, scale_factor=2, mode="nearest")
        levels.append(img - _gauss(up))
        img = small
    levels.append(img)
    return levels


def _patches(level: torch.Tensor, count: int, gen: torch.Generator, size: int = 7) -> torch.Tensor:
    n, c, h, w = level.shape
    ys = torch.randint(0, h - size + 1, (n, count), generator=gen)
    xs = torch.randint(0, w - size + 1, (n, count), generator=gen)
    off = torch.arange(size)
    rows = (ys[..., None] + off)[..., :, None].expand(n, count, size, size)
    cols = (xs[..., None] + off)[..., None, :].expand(n, count, size, size)
    idx_n = torch.arange(n)[:, None, None, None].expand_as(rows)
    p = level.permute(0, 2, 3, 1)[idx_n, rows, cols]  # [N, count, size, size, C]
    return p.reshape(n * count, size, size, c).permute(0, 3, 1, 2)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-8)
    return ((desc - mean) / std).flatten(1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, repeats: int = 4,
                       dirs: int = 128) -> float:
    """Mean over random directions of the L1 distance between sorted projections of a and b [M,D]."""
    results = []
    for _ in range(repeats):
        d = torch.randn(a.shape[1], dirs, generator=gen)
        d = d / d.norm(dim=0, keepdim=True)
        pa, _ = torch.sort(a @ d, dim=0)
        pb, _ = torch.sort(b @ d, dim=0)
        results.append((pa - pb).abs().mean())
    return float(torch.stack(results).mean())


def swd(real: torch.Tensor, fake: torch.Tensor, seed: int = 0, patches_per_image: int = 128) -> dict[str, float]:
    """real, fake: float images [N,3,R,R] (same N and R) -> {'swd_<res>': x1000 per level, 'swd': mean}."""
    if real.shape != fake.shape:
        raise ValueError(f"SWD needs equally many same-size images, got {tuple(real.shape)} and {tuple(fake.shape)}")
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for lr, lf in zip(laplacian_pyramid(real.float()), laplacian_pyramid(fake.float())):
        da = _normalise(_patches(lr, patches_per_image, gen))
        db = _normalise(_patches(lf, patches_per_image, gen))
        out[f"swd_{lr.shape[-1]}"] = sliced_wasserstein(da, db, gen) * 1e3
    out["swd"] = sum(out.values()) / len(out)
    return out
