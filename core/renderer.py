"""Tri-plane feature sampling and the coarse + importance volume renderer (EG3D ref §1.4, §1.6).

Shapes: N batch, R rays, S samples per ray, C = 32 plane channels, P = points.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.config import RenderOptions
from core.decoder import OSGDecoder
from core.plane_gather import gather_triplane
from core.ray_marcher import march, march_weights

# Each plane reads two of the (scaled) point coordinates as (u, v) = (width, height) indices.
# The original projects onto (x,y), (x,z) and (z,x): the (y,z) plane is never used (ref §0 quirk 1).
PLANE_AXES = ((0, 1), (0, 2), (2, 0))


def triplane_uv(points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """points [N,P,3] world -> normalised plane coords [N,3,P,2] in [-1,1] inside the box."""
    coords = (points * (2 / box_warp)).unbind(-1)
    # Stacked columns rather than p[..., [a, b]]: a Python-list index is a host-to-device copy on CUDA,
    # which also makes the frame uncapturable as a CUDA graph.
    return torch.stack([torch.stack([coords[a], coords[b]], dim=-1) for a, b in PLANE_AXES], dim=1)


def sample_triplane_reference(planes: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """The original's formulation: planes [N,3,C,H,W], points [N,P,3] -> mean features [N,P,C]."""
    return grid_sample_triplane(planes.reshape(-1, *planes.shape[2:]), points, box_warp)


def planes_table(planes: torch.Tensor) -> torch.Tensor:
    """planes [N,3,C,H,W] -> [N*3,C,H,W] in channels_last, the layout `sample_triplane` reads fastest.

    Both samplers read all C channels of a texel at once from NHWC memory (grid_sample about 2x faster
    on CPU than from NCHW, bit-identical results); prepare once per planes, reuse for every frame.
    """
    return planes.reshape(-1, *planes.shape[2:]).contiguous(memory_format=torch.channels_last)


def grid_sample_triplane(table: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Bilinear, zero-padded, align_corners=False sampling of the three planes with grid_sample, then
    their mean: table [N*3,C,H,W], points [N,P,3] -> [N,P,C]."""
    n = points.shape[0]
    grid = triplane_uv(points, box_warp).reshape(n * 3, 1, -1, 2)
    feats = F.grid_sample(table, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return feats.reshape(n, 3, table.shape[1], -1).mean(dim=1).transpose(1, 2)


def sample_triplane(table: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Mean of the three planes' bilinear samples: table [N*3,C,H,W] (ideally `planes_table(planes)`),
    points [N,P,3] -> [N,P,C].

    On CPU as a weighted gather (core.plane_gather: forward and backward together in about half of
    grid_sample's time, the same values to float rounding); elsewhere with grid_sample.
    """
    if table.device.type == "cpu":
        return gather_triplane(table, triplane_uv(points, box_warp))
    return grid_sample_triplane(table, points, box_warp)


def stratified_depths(n: int, r: int, opts: RenderOptions, origins: torch.Tensor, dirs: torch.Tensor,
                      jitter: bool) -> torch.Tensor:
    """Coarse depths [N,R,S,1]: linspace(start, end, S) plus U[0,1)*delta when `jitter` (ref §1.6.1).

    With jitter the uniforms are drawn as the original draws them: one torch.rand_like over [N,R,S,1] for
    numeric bounds, and for 'auto' bounds in [S,N,R,1] storage order (the original permutes a [S,N,R,1]
    linspace before rand_like, which keeps its strides; ref §1.6 draw-order quirk).
    """
    s = opts.depth_resolution
    dev = origins.device
    if opts.ray_start == "auto" or opts.ray_end == "auto":
        start, end = ray_box_limits(origins, dirs, opts.box_warp)  # [N,R,1]
        t = torch.linspace(0, 1, s, device=dev).reshape(1, 1, s, 1)
        depths = start.unsqueeze(-2) + (end - start).unsqueeze(-2) * t
        if jitter:
            delta = (end - start).unsqueeze(-2) / (s - 1)
            u = torch.rand(s, n, r, 1, device=dev, dtype=depths.dtype).permute(1, 2, 0, 3)
            depths = depths + u * delta
        return depths
    if opts.disparity_space_sampling:
        steps = torch.linspace(0, 1, s, device=dev).reshape(1, 1, s, 1).repeat(n, r, 1, 1)
        if jitter:
            steps = steps + torch.rand_like(steps) * (1 / (s - 1))
        return 1 / (1 / opts.ray_start * (1 - steps) + 1 / opts.ray_end * steps)
    depths = torch.linspace(opts.ray_start, opts.ray_end, s, device=dev).reshape(1, 1, s, 1).repeat(n, r, 1, 1)
    if jitter:
        depths = depths + torch.rand_like(depths) * ((opts.ray_end - opts.ray_start) / (s - 1))
    return depths


def ray_box_limits(origins: torch.Tensor, dirs: torch.Tensor, box_side: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab intersection of rays with the cube of side box_side -> (start, end) [N,R,1].

    Rays that miss take start = min of the hits' starts and end = max of the hits' *starts*
    (the original's quirk, ref §1.6.1).
    """
    half = box_side / 2
    inv = 1 / dirs
    t0 = (-half - origins) * inv
    t1 = (half - origins) * inv
    start = torch.minimum(t0, t1).amax(dim=-1, keepdim=True)
    end = torch.maximum(t0, t1).amin(dim=-1, keepdim=True)
    hit = end > start
    if hit.any():
        lo, hi = start[hit].min(), start[hit].max()
    else:
        lo = hi = start.new_tensor(0.0)
    start = torch.where(hit, start, lo)
    end = torch.where(hit, end, hi)
    return start, end


def importance_depths(depths: torch.Tensor, weights: torch.Tensor, n_importance: int,
                      u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling of fine depths from coarse weights (ref §1.6.3).

    depths [B,S] (coarse), weights [B,S-1] (midpoint weights), u [B,n_importance] in [0,1) -> [B,n_importance].
    Weights are smoothed (max-pool 2 then avg-pool 2, +0.01); the first and last smoothed weights are
    dropped, so the pdf spans S-3 bins over the S-1 midpoints and the last midpoint is never used.
    """
    with torch.no_grad():
        w = F.max_pool1d(weights.unsqueeze(1), 2, 1, padding=1)
        w = F.avg_pool1d(w, 2, 1).squeeze(1) + 0.01  # [B,S-1]
        bins = 0.5 * (depths[:, :-1] + depths[:, 1:])  # [B,S-1]
        w = w[:, 1:-1] + 1e-5
        pdf = w / w.sum(dim=-1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # [B,S-2]
        u = u.contiguous()
        inds = torch.searchsorted(cdf, u, right=True)
        below = (inds - 1).clamp(min=0)
        above = inds.clamp(max=cdf.shape[-1] - 1)
        cdf_b, cdf_a = cdf.gather(1, below), cdf.gather(1, above)
        bins_b, bins_a = bins.gather(1, below), bins.gather(1, above)
        denom = cdf_a - cdf_b
        denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
        return bins_b + (u - cdf_b) / denom * (bins_a - bins_b)


class ImportanceRenderer(nn.Module):
    """Coarse stratified pass + importance pass, decoded from the tri-planes and ray-marched.

    Rays are processed in chunks so that the per-sample working set stays in cache; results equal the
    unchunked computation (the depth clamp range is taken over the whole batch, as in the original).
    """

    def __init__(self, chunk_rays: int = 4096):
        super().__init__()
        self.chunk_rays = chunk_rays

    def forward(self, planes: torch.Tensor, decoder: OSGDecoder, origins: torch.Tensor, dirs: torch.Tensor,
                opts: RenderOptions, stochastic: bool = False, table: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """planes [N,3,C,H,W], origins/dirs [N,R,3] -> (features [N,R,C], depth [N,R,1], opacity [N,R,1]).

        stochastic=False: no stratified jitter and u = linspace(0,1) for importance sampling (flicker-free).
        stochastic=True: the original's random draws, in its order and shapes.
        """
        n, r, _ = origins.shape
        if table is None:
            table = planes_table(planes)
        coarse = stratified_depths(n, r, opts, origins, dirs, jitter=stochastic)  # [N,R,S,1]
        n_imp = opts.depth_resolution_importance
        u = None
        if n_imp > 0:
            u = (torch.rand(n * r, n_imp, device=origins.device) if stochastic else
                 torch.linspace(0, 1, n_imp, device=origins.device).expand(n * r, n_imp)).reshape(n, r, n_imp)
        # Fine samples fall between coarse mid-points, so the coarse extremes are the global ones.
        depth_range = (coarse.min(), coarse.max())

        feats, depth, opacity = [], [], []
        for a in range(0, r, self.chunk_rays):
            b = min(a + self.chunk_rays, r)
            out = self._render_chunk(table, decoder, origins[:, a:b], dirs[:, a:b], coarse[:, a:b],
                                     None if u is None else u[:, a:b], opts, depth_range)
            feats.append(out[0]), depth.append(out[1]), opacity.append(out[2])
        return torch.cat(feats, 1), torch.cat(depth, 1), torch.cat(opacity, 1)

    def _render_chunk(self, table, decoder, origins, dirs, depths, u, opts, depth_range):
        n, r, s, _ = depths.shape
        sigma, rgb = self.run_model(table, decoder, origins, dirs, depths, opts)
        if u is not None:
            weights = march_weights(sigma, depths)  # [N,r,S-1,1]
            fine = importance_depths(depths.reshape(n * r, s), weights.reshape(n * r, s - 1),
                                     u.shape[-1], u.reshape(n * r, -1)).reshape(n, r, -1, 1)
            sigma_f, rgb_f = self.run_model(table, decoder, origins, dirs, fine, opts)
            depths = torch.cat([depths, fine], dim=-2)
            order = torch.argsort(depths, dim=-2)
            depths = depths.gather(-2, order)
            sigma = torch.cat([sigma, sigma_f], dim=-2).gather(-2, order)
            # the same permutation as whole feature rows (3x faster than gather along dim -2 on CPU)
            k = order.shape[-2]
            rows = (order.view(n * r, k) + torch.arange(0, n * r * k, k, device=order.device).unsqueeze(1)).view(-1)
            rgb = torch.cat([rgb, rgb_f], dim=-2).view(n * r * k, -1).index_select(0, rows).view(n, r, k, -1)
        feat, depth, weights = march(rgb, sigma, depths, white_back=opts.white_back, depth_range=depth_range)
        return feat, depth, weights.sum(dim=-2)

    @staticmethod
    def run_model(table, decoder, origins, dirs, depths, opts):
        """Decode the points o + t*d: depths [N,r,K,1] -> (sigma [N,r,K,1], rgb [N,r,K,C])."""
        n, r, k, _ = depths.shape
        points = (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(n, r * k, 3)
        sigma, rgb = decoder(sample_triplane(table, points, opts.box_warp))
        if opts.density_noise > 0:
            sigma = sigma + torch.randn_like(sigma) * opts.density_noise
        return sigma.reshape(n, r, k, 1), rgb.reshape(n, r, k, -1)

