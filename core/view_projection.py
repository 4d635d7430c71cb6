"""Colours of surface points from super-resolved renderings of views around the object.

Each of K orbit cameras renders the image (SR) of the latent; a surface point takes a view's colour where
it is in frame, faces the camera and passes a depth test against the mesh rasterised from that camera
(`core.rasterizer.depth_buffer`: hidden points, e.g. the back of the head, take nothing). Views are blended
with weight cos(angle between the normal and the direction to the camera)^WEIGHT_POWER. The same code colours mesh
vertices (`--color views`) and texels (`--texture-from views`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.cameras import OrbitCamera
from core.progress import Progress, report
from core.rasterizer import depth_buffer
from core.triangle_mesh import Mesh, median_edge_length

VIEW_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (-0.5, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, -0.35), (0.0, 0.35),
                (1.5, 0.0), (-1.5, 0.0))
"""(yaw, pitch) offsets from frontal, radians, of the cameras used for view colours (in this order)."""

MIN_FACING = 0.1
"""Points seen at a grazing angle (cosine below this) take nothing from a view."""
WEIGHT_POWER = 2
"""A view's weight is cos(angle to the camera) to this power."""


def view_labels(G, num_views: int, fov_deg: float | None = None, device: torch.device | str = "cpu"
                ) -> list[torch.Tensor]:
    """Camera labels [1,25] of the first `num_views` VIEW_OFFSETS on the checkpoint's average orbit."""
    if not 1 <= num_views <= len(VIEW_OFFSETS):
        raise ValueError(f"number of views must be 1..{len(VIEW_OFFSETS)}, got {num_views}")
    return [OrbitCamera.from_options(G.options, fov_deg, yaw, pitch).label(device)
            for yaw, pitch in VIEW_OFFSETS[:num_views]]


def project(points: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World points [P,3], camera label [1,25] -> (uv [P,2] normalised image coordinates, [0,1] inside the
    frame; camera-space depth [P]; unit direction to the camera [P,3]) (EG3D ref §1.8)."""
    cam2world, k = label[0, :16].view(4, 4), label[0, 16:].view(3, 3)
    rot, origin = cam2world[:3, :3], cam2world[:3, 3]
    local = (points - origin) @ rot  # R^T (X - o): camera +x right, +y down, +z forward
    z = local[:, 2].clamp_min(1e-6)
    u = k[0, 0] * local[:, 0] / z + k[0, 1] * local[:, 1] / z + k[0, 2]
    v = k[1, 1] * local[:, 1] / z + k[1, 2]
    to_cam = origin - points
    return torch.stack([u, v], dim=1), z, to_cam / to_cam.norm(dim=1, keepdim=True).clamp_min(1e-8)


def sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """image [1,C,H,W], uv [P,2] in [0,1] (pixel centres at (j+0.5)/W) -> [P,C] bilinear, border clamp."""
    grid = (uv * 2 - 1).view(1, 1, -1, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def visible(points: torch.Tensor, mesh_vertices: torch.Tensor, faces: torch.Tensor, label: torch.Tensor,
            resolution: int, tolerance: float) -> torch.Tensor:
    """Which points [P,3] the camera sees unoccluded by the mesh -> bool [P].

    The mesh's depth buffer at `resolution`² pixels; a point is visible when it is in frame and no more than
    `tolerance` (world units) plus one pixel's depth slope behind the nearest surface at its pixel.
    """
    uv_v, z_v, _ = project(mesh_vertices, label)
    zbuf = depth_buffer(uv_v[faces] * resolution, z_v[faces], resolution, resolution)
    uv, z, _ = project(points, label)
    inside = ((uv >= 0) & (uv < 1)).all(dim=1)
    pix = (uv.clamp(0, 1 - 1e-6) * resolution).long()
    nearest = zbuf[pix[:, 1], pix[:, 0]]
    pixel_size = z / (float(label[0, 16]) * resolution)  # world size of one pixel at the point's depth
    return inside & (z <= nearest + tolerance + 2 * pixel_size)


def blend_views(G, planes: torch.Tensor, ws: torch.Tensor, mesh: Mesh, points: torch.Tensor,
                normals: torch.Tensor, num_views: int = 7, fov_deg: float | None = None,
                progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [P,3] on `mesh` with unit normals [P,3] -> (blended rgb [P,3] in [0,1], total weight [P];
    weight 0: no view sees the point). One SR rendering per view."""
    dev = planes.device
    verts = torch.from_numpy(mesh.vertices).to(dev)
    faces = torch.from_numpy(mesh.faces).to(dev)
    tolerance = 2 * median_edge_length(mesh.vertices, mesh.faces)
    acc = torch.zeros(len(points), 3, device=dev)
    weight = torch.zeros(len(points), device=dev)
    labels = view_labels(G, num_views, fov_deg, dev)
    for i, label in enumerate(labels):
        report(progress, i, num_views, f"view {i + 1}/{num_views}")
        with torch.no_grad():
            out = G.render_planes(planes, ws, label)
        image = out.get("image", out["image_raw"]).float()
        uv, _, to_cam = project(points, label)
        rgb = (sample_image(image, uv).clamp(-1, 1) + 1) / 2
        facing = (normals * to_cam).sum(dim=1)
        seen = visible(points, verts, faces, label, image.shape[-1], tolerance) & (facing > MIN_FACING)
        w = facing.clamp_min(0) ** WEIGHT_POWER * seen
        acc += rgb * w[:, None]
        weight += w
    report(progress, num_views, num_views, "views done")
    return acc / weight.clamp_min(1e-8)[:, None], weight

