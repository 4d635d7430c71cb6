"""Triangle rasterisation in torch, on whatever device the triangles are on: which pixel centres each 2D
triangle covers, with barycentric weights.

The texture baker rasterises the faces in UV space (which texels each face owns); the view baker
rasterises the mesh seen from a camera into a depth buffer (what each view can see).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

EDGE_EPS = 1e-5
"""Barycentric slack: a pixel centre on an edge (up to rounding) belongs to both faces sharing it."""


@dataclass
class Fragments:
    """Covered pixel centres, one row per (pixel, face) pair."""
    pixel: torch.Tensor
    """[K] long flat pixel index row * width + column."""
    face: torch.Tensor
    """[K] long face index."""
    bary: torch.Tensor
    """[K,3] float32 weights of the face's three corners at the pixel centre (sum 1)."""


def rasterize(tri: torch.Tensor, width: int, height: int, chunk: int = 1 << 22) -> Fragments:
    """Triangles tri [F,3,2] in pixel units (x to the right, y down; pixel (row i, column j) has its centre
    at (j + 0.5, i + 0.5)) -> the pixel centres inside or on the edge of each triangle.

    Each triangle tests the pixel centres of its bounding box, enumerated flat (a face with a w x h box
    owns w*h consecutive candidates), in batches of about `chunk` candidates. Barycentrics are computed
    relative to the first corner, which keeps float32 exact enough at any texture size. Zero-area
    triangles cover nothing.
    """
    dev = tri.device
    tri = tri.float()
    lo = torch.ceil(tri.amin(dim=1) - 0.5).long()  # [F,2] first pixel column / row whose centre may be inside
    hi = torch.floor(tri.amax(dim=1) - 0.5).long()
    lo = torch.maximum(lo, torch.zeros_like(lo))
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1], device=dev))
    box = (hi - lo + 1).clamp_min(0)  # [F,2] box width, height in pixels
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # twice the signed area
    count = box[:, 0] * box[:, 1] * (area.abs() > 1e-12)
    live = torch.nonzero(count)[:, 0]
    ends = torch.cumsum(count[live], 0)
    pixels, faces, barys = [], [], []
    start = 0
    while start < len(live):  # faces [start, stop) hold about `chunk` candidates
        stop = max(int(torch.searchsorted(ends, ends[start] - count[live[start]] + chunk)), start + 1)
        f = live[start:stop]
        n = count[f]
        fi = torch.repeat_interleave(torch.arange(len(f), device=dev), n)  # candidate -> face in batch
        first = torch.cumsum(n, 0) - n
        k = torch.arange(len(fi), device=dev) - first[fi]  # candidate's place in its face's box
        w = box[f, 0][fi]
        px, py = lo[f, 0][fi] + k % w, lo[f, 1][fi] + k // w
        g = f[fi]
        dx = px.float() + 0.5 - tri[g, 0, 0]
        dy = py.float() + 0.5 - tri[g, 0, 1]
        inv = 1 / area[g]
        wb = (dx * e2[g, 1] - dy * e2[g, 0]) * inv  # weight of corner 1
        wc = (e1[g, 0] * dy - e1[g, 1] * dx) * inv  # weight of corner 2
        wa = 1 - wb - wc
        ok = torch.nonzero((wa >= -EDGE_EPS) & (wb >= -EDGE_EPS) & (wc >= -EDGE_EPS))[:, 0]
        pixels.append(py[ok] * width + px[ok])
        faces.append(g[ok])
        barys.append(torch.stack([wa[ok], wb[ok], wc[ok]], dim=1))
        start = stop
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return Fragments(empty, empty, torch.zeros(0, 3, device=dev))
    return Fragments(torch.cat(pixels), torch.cat(faces), torch.cat(barys))


def first_owner(fragments: Fragments, num_pixels: int) -> Fragments:
    """One fragment per covered pixel (the highest face index where faces share it, so the choice does
    not depend on the order the device happens to write in)."""
    owner = torch.full((num_pixels,), -1, dtype=torch.long, device=fragments.face.device)
    owner.scatter_reduce_(0, fragments.pixel, fragments.face, reduce="amax")
    keep = fragments.face == owner[fragments.pixel]
    return Fragments(fragments.pixel[keep], fragments.face[keep], fragments.bary[keep])


def depth_buffer(tri: torch.Tensor, depth: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Nearest depth per pixel [height, width] (inf where nothing is drawn) of triangles tri [F,3,2] (pixel
    units as in `rasterize`) whose corners lie at camera depths depth [F,3] (> 0).

    Inverse depth is linear in screen space under a perspective projection, so it is what is interpolated.
    """
    frags = rasterize(tri, width, height)
    z = 1 / (frags.bary * (1 / depth[frags.face])).sum(dim=1)
    zbuf = torch.full((width * height,), float("inf"), device=tri.device)
    zbuf.scatter_reduce_(0, frags.pixel, z, reduce="amin")
    return zbuf.view(height, width)
