"""Per-vertex attributes of an iso-surface: colours (decoder or projected renderings) and normals.

Normals come from the gradient of the decoder's density (smooth, unlike face normals of the triangles);
colours are sRGB uint8.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from core.progress import Progress
from core.renderer import planes_table

if TYPE_CHECKING:
    from core.mesh import Mesh


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
        v, f = mesh.vertices.astype(np.float64), mesh.faces
        face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 x area
        acc = np.zeros_like(v)
        for k in range(3):
            np.add.at(acc, f[:, k], face_n)
        acc /= np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)
        normals[flat] = acc[flat]
    return normals


def decoder_colors(G, planes: torch.Tensor, vertices: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Decoder rgb features 0-2 (in [0,1]) at the vertices -> [V,3] uint8."""
    out = []
    with torch.no_grad():
        table = planes_table(planes)
        for s in range(0, len(vertices), chunk):
            pts = torch.from_numpy(vertices[s:s + chunk]).to(planes.device)[None]
            out.append(G.sample_planes(planes, pts, table)["rgb"][0, :, :3].float().cpu())
    rgb = torch.cat(out) if out else torch.zeros(0, 3)
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


VIEW_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (-0.5, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, -0.35), (0.0, 0.35),
                (1.5, 0.0), (-1.5, 0.0))
"""(yaw, pitch) offsets from frontal, radians, of the cameras used by `view_colors` (in this order)."""


def _project(vertices: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World vertices [V,3], camera label [1,25] -> (uv [V,2] normalised image coords in [0,1] inside the
    frame, distance to the camera centre [V], unit direction to the camera [V,3]) (EG3D ref §1.8)."""
    cam2world, k = label[0, :16].view(4, 4), label[0, 16:].view(3, 3)
    rot, origin = cam2world[:3, :3], cam2world[:3, 3]
    local = (vertices - origin) @ rot  # R^T (X - o): camera +x right, +y down, +z forward
    z = local[:, 2].clamp_min(1e-6)
    u = k[0, 0] * local[:, 0] / z + k[0, 1] * local[:, 1] / z + k[0, 2]
    v = k[1, 1] * local[:, 1] / z + k[1, 2]
    to_cam = origin - vertices
    dist = to_cam.norm(dim=1)
    return torch.stack([u, v], dim=1), dist, to_cam / dist[:, None].clamp_min(1e-8)


def _sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """image [1,C,H,W], uv [V,2] in [0,1] (pixel centres at (j+0.5)/W) -> [V,C] bilinear, border clamp."""
    grid = (uv * 2 - 1).view(1, 1, -1, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def _visible(uv: torch.Tensor, dist: torch.Tensor, edge: float, focal: float) -> torch.Tensor:
    """Which projected vertices are not hidden by the mesh itself -> bool [V].

    A z-buffer of the vertices' camera distances at a resolution where one mesh edge is about one
    pixel (so the front surface covers its pixels); a vertex is visible when it is within three edge
    lengths of the nearest vertex in its pixel. (The renderer's own depth is an expected ray
    termination that semi-transparent density can pull well in front of the iso-surface.)
    """
    res = int(min(max(float(dist.median()) / (edge * focal), 16), 2048))
    inside = ((uv >= 0) & (uv < 1)).all(dim=1)
    pix = (uv.clamp(0, 1 - 1e-6) * res).long()
    flat = pix[:, 1] * res + pix[:, 0]
    zbuf = torch.full((res * res,), float("inf"), device=dist.device)
    zbuf.scatter_reduce_(0, flat[inside], dist[inside], reduce="amin")
    return inside & (dist <= zbuf[flat] + 3 * edge)


def view_colors(G, planes: torch.Tensor, ws: torch.Tensor, mesh: Mesh, num_views: int = 7,
                fov_deg: float | None = None, progress: Progress | None = None) -> np.ndarray:
    """Vertex colours from super-resolved renderings of `num_views` cameras -> [V,3] uint8.

    Each view renders the image (SR); a vertex takes a view's colour where it is in frame, faces the
    camera and is not hidden by the mesh (`_visible`). Views are averaged with weight
    cos(angle to the camera)²; vertices no view sees keep the decoder's colour.
    """
    import trimesh

    from core.cameras import OrbitCamera
    if not 1 <= num_views <= len(VIEW_OFFSETS):
        raise ValueError(f"number of views must be 1..{len(VIEW_OFFSETS)}, got {num_views}")
    dev = planes.device
    verts = torch.from_numpy(mesh.vertices).to(dev)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    normals = mesh.normals if mesh.normals is not None else np.asarray(tm.vertex_normals, dtype=np.float32)
    normals = torch.from_numpy(normals).to(dev)
    edge = float(np.median(tm.edges_unique_length))
    acc = torch.zeros(len(verts), 3, device=dev)
    weight = torch.zeros(len(verts), device=dev)
    opts = G.options
    for i, (yaw, pitch) in enumerate(VIEW_OFFSETS[:num_views]):
        if progress is not None:
            progress.update(i, num_views, f"colour view {i + 1}/{num_views}")
        label = OrbitCamera(yaw=yaw, pitch=pitch, radius=opts.avg_camera_radius,
                            pivot=tuple(opts.avg_camera_pivot),
                            fov_deg=fov_deg or opts.avg_camera_fov).label(dev)
        with torch.no_grad():
            out = G.render_planes(planes, ws, label)
        uv, dist, to_cam = _project(verts, label)
        image = out.get("image", out["image_raw"]).float()
        rgb = (_sample_image(image, uv).clamp(-1, 1) + 1) / 2
        facing = (normals * to_cam).sum(dim=1)
        seen = _visible(uv, dist, edge, float(label[0, 16]))
        w = facing.clamp_min(0) ** 2 * (seen & (facing > 0.1))
        acc += rgb * w[:, None]
        weight += w
    if progress is not None:
        progress.update(num_views, num_views, "colours done")
    colors = decoder_colors(G, planes, mesh.vertices)
    seen = (weight > 0).cpu().numpy()
    blended = (acc / weight.clamp_min(1e-8)[:, None]).cpu().numpy()
    colors[seen] = (np.clip(blended[seen], 0, 1) * 255 + 0.5).astype(np.uint8)
    return colors

