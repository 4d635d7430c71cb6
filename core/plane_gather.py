"""Tri-plane sampling as one weighted gather of texel rows: the CPU path of `renderer.sample_triplane`.

Bilinear, zero-padded, align_corners=False sampling of the three planes followed by their mean is, per
point, a weighted sum of 12 texels (3 planes x 4 corners, weights w_x * w_y / 3, 0 off the plane). With the
planes as rows [N*3*H*W, C] (the channels_last layout) that sum is one `embedding_bag`, and its gradient
with respect to the planes is the transposed gather: the (point, corner) pairs sorted by texel and summed by
a second `embedding_bag`. On one CPU thread forward and backward together take about half of grid_sample's
time (whose backward scatters one float at a time); results agree with it to float rounding (~1e-7).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""(y, x) offsets of the four bilinear corners from (floor(iy), floor(ix))."""


def triplane_texels(uv: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uv [N,3,P,2] plane coordinates in [-1,1] (x = width, y = height) -> rows [N*P,12] of the table's
    texels [N*3*H*W] and their weights [N*P,12] (3 planes x 4 corners).

    Per plane, grid_sample's corners: ix = ((u + 1) W - 1) / 2, corners floor(ix) and floor(ix) + 1 with
    weights 1 - frac and frac; a corner off the plane weighs 0 (its row is clamped onto the plane).
    The 1/3 of the mean over planes is in the weights. Computed corner-major ([4,3,N,P], every op on
    contiguous memory), then transposed once into bags of 12.
    """
    n, _, p, _ = uv.shape
    u, v = uv[..., 0].transpose(0, 1), uv[..., 1].transpose(0, 1)  # [3,N,P]
    ix = ((u + 1) * width - 1) / 2
    iy = ((v + 1) * height - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    wx = ((1 - fx) * ((x0 >= 0) & (x0 < width)) / 3, fx * ((x0 >= -1) & (x0 < width - 1)) / 3)
    wy = ((1 - fy) * ((y0 >= 0) & (y0 < height)), fy * ((y0 >= -1) & (y0 < height - 1)))
    itype = torch.int32 if n * 3 * height * width < 2 ** 31 else torch.int64
    x0, y0 = x0.to(itype), y0.to(itype)
    # texel (y, x) of plane k of item b is row ((3 b + k) H + y) W + x
    first = torch.arange(3 * n, device=uv.device, dtype=itype).view(n, 3, 1).transpose(0, 1) * (height * width)
    xs = (x0.clamp(0, width - 1), (x0 + 1).clamp_(0, width - 1))
    ys = tuple(y.clamp_(0, height - 1).mul_(width).add_(first) for y in (y0.clone(), y0 + 1))
    weights = torch.stack([wy[i] * wx[j] for i, j in CORNERS])  # [4,3,N,P]
    rows = torch.stack([ys[i] + xs[j] for i, j in CORNERS])
    return rows.permute(2, 3, 1, 0).reshape(n * p, 12), weights.permute(2, 3, 1, 0).reshape(n * p, 12)


class WeightedGather(torch.autograd.Function):
    """out[b] = sum_k weights[b,k] * table[rows[b,k]]: table [T,C], rows/weights [B,K] -> [B,C]."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table if ctx.needs_input_grad[2] else None, rows, weights)
        ctx.n_rows = table.shape[0]
        return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        table, rows, weights = ctx.saved_tensors
        grad = grad.contiguous()
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            # bag t holds the (point, corner) pairs that read row t: grad_table[t] = sum w * grad[point]
            flat = rows.reshape(-1)
            order = torch.argsort(flat, stable=True)
            counts = torch.bincount(flat, minlength=ctx.n_rows)
            offsets = (torch.cumsum(counts, 0) - counts).to(order.dtype)
            grad_table = F.embedding_bag(order // rows.shape[1], grad, offsets, mode="sum",
                                         per_sample_weights=weights.reshape(-1)[order])
        if ctx.needs_input_grad[2]:
            grad_weights = (table[rows] * grad.unsqueeze(1)).sum(-1)
        return grad_table, None, grad_weights


def gather_triplane(table: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """table [N*3,C,H,W] (channels_last: read without a copy), uv [N,3,P,2] -> mean of the three planes'
    bilinear samples [N,P,C]."""
    m, c, h, w = table.shape
    n, _, p, _ = uv.shape
    rows, weights = triplane_texels(uv, h, w)
    texels = table.permute(0, 2, 3, 1).reshape(m * h * w, c)  # [N*3*H*W, C]
    return WeightedGather.apply(texels, rows, weights.to(table.dtype)).view(n, p, c)
