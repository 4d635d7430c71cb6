"""Sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN-style); needs no downloaded network.

For each pyramid level (full resolution down to 16x16), random 7x7 patches are taken from real and
generated images, normalised per colour channel within each set, and compared by the mean distance
between sorted projections onto random unit directions. Reported x1000, per level and averaged.
Images stream through `SWDAccumulator` in chunks on their own device; it keeps a fixed budget of
descriptors per level, so a 2048-image 512² evaluation needs no more memory than a 64-image one.
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
    idx_n, rows, cols = (t.to(level.device) for t in (idx_n, rows, cols))
    p = level.permute(0, 2, 3, 1)[idx_n, rows, cols]  # [N, count, size, size, C]
    return p.reshape(n * count, size, size, c).permute(0, 3, 1, 2)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, repeats: int = 4,
                       dirs: int = 128) -> float:
    """Mean over random directions of the L1 distance between sorted projections of a and b [M,D]."""
    results = []
    for _ in range(repeats):
        d = torch.randn(a.shape[1], dirs, generator=gen)
        d = d / d.norm(dim=0, keepdim=True)
        pa, _ = torch.sort((a @ d).T.contiguous(), dim=1)  # sorting along contiguous rows is much faster
        pb, _ = torch.sort((b @ d).T.contiguous(), dim=1)
        results.append((pa - pb).abs().mean())
    return float(torch.stack(results).mean())


class SWDAccumulator:
    """Streaming SWD descriptors for one image set: images arrive in chunks (on any device), only a
    fixed budget of patch descriptors per pyramid level is kept, so memory does not depend on the
    image count. Past the budget, descriptors are kept by reservoir sampling (a uniform subset).
    """

    def __init__(self, n_images: int, budget: int = 1 << 15, seed: int = 0, patches_per_image: int = 128):
        self.budget = budget
        self.patches_per_image = max(1, min(patches_per_image, -(-budget // max(n_images, 1))))
        self.gen = torch.Generator().manual_seed(seed)
        self.levels: dict[int, torch.Tensor] = {}
        self.seen: dict[int, int] = {}

    def add(self, images: torch.Tensor) -> None:
        """images: float [N,3,R,R] in [-1, 1]."""
        for level in laplacian_pyramid(images.float()):
            res = level.shape[-1]
            desc = _patches(level, self.patches_per_image, self.gen)
            desc = desc.flatten(1)
            buf, seen = self.levels.get(res), self.seen.get(res, 0)
            if buf is None:
                buf = torch.empty(self.budget, desc.shape[1], device=desc.device)
                self.levels[res] = buf
            room = max(0, min(self.budget - seen, desc.shape[0]))
            buf[seen:seen + room] = desc[:room]
            rest = desc[room:]
            if len(rest):  # reservoir: the i-th descriptor replaces a random slot with probability budget/(i+1)
                pos = torch.arange(seen + room, seen + room + len(rest)) + 1
                slot = (torch.rand(len(rest), generator=self.gen) * pos).long()
                keep = slot < self.budget
                buf[slot[keep].to(buf.device)] = rest[keep.to(rest.device)]
            self.seen[res] = seen + desc.shape[0]

    def descriptors(self) -> dict[int, torch.Tensor]:
        """Kept descriptors per pyramid level: {resolution: [M, 3*7*7]}."""
        return {res: buf[:min(self.seen[res], self.budget)] for res, buf in self.levels.items()}

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.levels.values())


def _normalise_flat(desc: torch.Tensor, channels: int = 3) -> torch.Tensor:
    d = desc.view(desc.shape[0], channels, -1)
    mean = d.mean(dim=(0, 2), keepdim=True)
    std = d.std(dim=(0, 2), keepdim=True).clamp(min=1e-8)
    return ((d - mean) / std).flatten(1)


def swd_from(real: dict[int, torch.Tensor], fake: dict[int, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """SWD x1000 per pyramid level and averaged, from the descriptors of two equally large image sets."""
    gen = torch.Generator().manual_seed(seed + 1)
    out = {}
    for res in sorted(real, reverse=True):
        a, b = real[res], fake[res]
        m = min(len(a), len(b))
        out[f"swd_{res}"] = sliced_wasserstein(_normalise_flat(a[:m]).cpu(), _normalise_flat(b[:m]).cpu(), gen) * 1e3
    out["swd"] = sum(out.values()) / len(out)
    return out


def swd(real: torch.Tensor, fake: torch.Tensor, seed: int = 0, chunk: int = 64) -> dict[str, float]:
    """real, fake: float images [N,3,R,R] (same N and R) -> {'swd_<res>': x1000 per level, 'swd': mean}."""
    if real.shape != fake.shape:
        raise ValueError(f"SWD needs equally many same-size images, got {tuple(real.shape)} and {tuple(fake.shape)}")
    acc = [SWDAccumulator(len(real), seed=seed), SWDAccumulator(len(fake), seed=seed + 1)]
    for a, images in zip(acc, (real, fake)):
        for i in range(0, len(images), chunk):
            a.add(images[i:i + chunk])
    return swd_from(acc[0].descriptors(), acc[1].descriptors(), seed=seed)
