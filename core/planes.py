"""Tri-plane inspection: the three feature planes of a latent as display arrays, one channel or a PCA of
all channels to RGB, with per-plane statistics (the studio's Planes panel and the remote server's
InspectPlanes job show the same numbers)."""
from __future__ import annotations

import numpy as np
import torch

DISPLAY_SIZE = 256
"""Planes larger than this are area-downsampled for display."""


def pca_rgb(planes: torch.Tensor, samples: int = 8192) -> np.ndarray:
    """[3, C, H, W] -> [3, H, W, 3] uint8: the 3 leading principal components of the C-dim features,
    fitted jointly over the three planes, each stretched from its 1st to 99th percentile."""
    n, c, h, w = planes.shape
    feats = planes.permute(0, 2, 3, 1).reshape(-1, c).float()                      # [3*H*W, C]
    gen = torch.Generator().manual_seed(0)
    sample = feats[torch.randint(len(feats), (min(samples, len(feats)),), generator=gen)]
    mean = sample.mean(0)
    _, _, v = torch.linalg.svd(sample - mean, full_matrices=False)
    proj = (feats - mean) @ v[:3].T                                                 # [3*H*W, 3]
    lo, hi = torch.quantile(proj[::7], torch.tensor([0.01, 0.99]), dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return (rgb * 255 + 0.5).to(torch.uint8).reshape(n, h, w, 3).numpy()


def plane_images(planes: torch.Tensor, channel: int | None) -> dict:
    """[1, 3, C, H, W] planes -> display arrays and statistics (one channel, or PCA when None)."""
    p = planes[0].float().cpu()
    if p.shape[-1] > DISPLAY_SIZE:
        p = torch.nn.functional.interpolate(p, size=(DISPLAY_SIZE, DISPLAY_SIZE), mode="area")
    stats = [(float(p[i].mean()), float(p[i].std()), float(p[i].min()), float(p[i].max())) for i in range(3)]
    channel_std = p.std(dim=(2, 3)).mean(0).numpy().astype(np.float32)           # [C]
    if channel is None:
        return {"rgb": pca_rgb(p), "stats": stats, "channel_std": channel_std}
    maps = p[:, channel].numpy().astype(np.float32)                                 # [3, H, W]
    ch_stats = [(float(m.mean()), float(m.std()), float(m.min()), float(m.max())) for m in maps]
    return {"scalar": maps, "range": (float(maps.min()), float(maps.max())), "stats": ch_stats,
            "channel_std": channel_std}
