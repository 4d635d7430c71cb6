"""Per-vertex attributes of an iso-surface: normals from the density gradient, colours from the decoder
or from renderings of views (`core.view_projection`).

Normals come from the gradient of the decoder's density (smooth, unlike face normals of the triangles);
colours are sRGB uint8.
"""
from __future__ import annotations

import numpy as np
import torch

from core.progress import Progress, report
from core.renderer import planes_table
from core.triangle_mesh import Mesh, area_weighted_normals
from core.view_projection import blend_views


def density_normals(G, planes: torch.Tensor, mesh: Mesh, spacing: float, chunk: int = 1 << 15) -> np.ndarray:
    """Unit outward normals [V,3] float32: -grad(sigma), central differences one grid `spacing` apart.

    The density grows inwards, so its negative gradient points out. Taken at the grid's own scale it
    varies smoothly over the surface (the triangles' face normals are rougher, and the pointwise gradient
    of the bilinear planes is rougher still). Where it vanishes (flat density, e.g. on the crop's cut
    faces) the area-weighted face normal is used instead.
    """
    table = planes_table(planes)
    steps = torch.eye(3, device=planes.device) * spacing
    out = []
    with torch.no_grad():
        for s in range(0, len(mesh.vertices), chunk):
            v = torch.from_numpy(mesh.vertices[s:s + chunk]).to(planes.device)
            pts = torch.cat([v + steps[d] * sign for d in range(3) for sign in (1, -1)])[None]
            sigma = G.sample_planes(planes, pts, table)["sigma"].reshape(3, 2, -1).float()
            out.append((sigma[:, 1] - sigma[:, 0]).T.cpu())  # -(sigma(+h) - sigma(-h)) per axis
    grad = torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)
    length = np.linalg.norm(grad, axis=1, keepdims=True)
    flat = length[:, 0] < 1e-6
    normals = (grad / np.maximum(length, 1e-12)).astype(np.float32)
    if flat.any():
        normals[flat] = area_weighted_normals(mesh.vertices, mesh.faces)[flat]
    return normals


def decoder_rgb(G, planes: torch.Tensor, points: torch.Tensor, chunk: int = 1 << 16,
                progress: Progress | None = None, message: str = "decoder colour") -> torch.Tensor:
    """Decoder rgb features 0-2 at world points [P,3] (on the planes' device) -> [P,3] float in [0,1]."""
    out = []
    with torch.no_grad():
        table = planes_table(planes)
        for s in range(0, len(points), chunk):
            report(progress, s, len(points), message)
            out.append(G.sample_planes(planes, points[None, s:s + chunk], table)["rgb"][0, :, :3].float())
    return torch.cat(out).clamp(0, 1) if out else torch.zeros(0, 3, device=points.device)


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """Colours [...,3] in [0,1] (any device) -> uint8 numpy, rounded."""
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def decoder_colors(G, planes: torch.Tensor, vertices: np.ndarray) -> np.ndarray:
    """Decoder rgb features 0-2 (in [0,1]) at the vertices -> [V,3] uint8."""
    return to_uint8(decoder_rgb(G, planes, torch.from_numpy(vertices).to(planes.device)))


def view_colors(G, planes: torch.Tensor, ws: torch.Tensor, mesh: Mesh, num_views: int = 7,
                fov_deg: float | None = None, progress: Progress | None = None) -> np.ndarray:
    """Vertex colours from super-resolved renderings of `num_views` cameras (`blend_views`) -> [V,3] uint8;
    vertices no view sees keep the decoder's colour."""
    dev = planes.device
    verts = torch.from_numpy(mesh.vertices).to(dev)
    normals = mesh.normals if mesh.normals is not None else area_weighted_normals(mesh.vertices, mesh.faces)
    rgb, weight = blend_views(G, planes, ws, mesh, verts, torch.from_numpy(normals).float().to(dev),
                              num_views, fov_deg, progress)
    seen = weight > 0
    rgb[~seen] = decoder_rgb(G, planes, verts[~seen])
    return to_uint8(rgb)
