"""Volume rendering along each ray with mid-point quadrature (EG3D ref §1.7, MipRayMarcher2).

For samples t_0..t_{K-1}:  delta_i = t_{i+1} - t_i,  sigma_i' = softplus(mid(sigma)_i - 1),
alpha_i = 1 - exp(-sigma_i' delta_i),  T_i = prod_{j<i} (1 - alpha_j + 1e-10),  w_i = alpha_i T_i,
C = sum_i w_i mid(c)_i,  depth = sum_i w_i mid(t)_i / sum_i w_i.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _mid(x: torch.Tensor) -> torch.Tensor:
    return (x[..., :-1, :] + x[..., 1:, :]) * 0.5


def march_weights(densities: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """densities, depths [..., K, 1] (raw sigma) -> weights w [..., K-1, 1]."""
    deltas = depths[..., 1:, :] - depths[..., :-1, :]
    sigma = F.softplus(_mid(densities) - 1)  # the -1 bias is part of the trained model
    alpha = 1 - torch.exp(-sigma * deltas)
    shifted = torch.cat([torch.ones_like(alpha[..., :1, :]), 1 - alpha + 1e-10], dim=-2)
    return alpha * torch.cumprod(shifted, dim=-2)[..., :-1, :]


def march(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor, white_back: bool = False,
          depth_range: tuple[float, float] | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """colors [...,K,C], densities/depths [...,K,1] -> (rgb [...,C] in [-1,1], depth [...,1], weights [...,K-1,1]).

    depth_range clamps the composite depth; the original takes min/max of *all* depths of the batch,
    which a caller that splits rays into chunks must pass in.
    """
    weights = march_weights(densities, depths)
    mid = _mid(colors)
    rgb = (mid.mul_(weights) if not mid.requires_grad else weights * mid).sum(dim=-2)
    total = weights.sum(dim=-2)
    # A ray that hits nothing (total == 0) gets depth inf -> the far bound, as the original's nan_to_num of
    # 0/0; dividing by the clamped total instead keeps that ray's gradient finite (0/0 would make it NaN).
    num = (weights * _mid(depths)).sum(dim=-2)
    depth = num / total.clamp_min(torch.finfo(total.dtype).tiny)
    depth = torch.where(total > 0, depth, torch.full_like(depth, float("inf")))
    depth = torch.nan_to_num(depth, nan=float("inf"))
    lo, hi = depth_range if depth_range is not None else (depths.min(), depths.max())
    depth = torch.clamp(depth, lo, hi)
    if white_back:
        rgb = rgb + 1 - total
    return rgb * 2 - 1, depth, weights
