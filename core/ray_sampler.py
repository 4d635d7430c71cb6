"""Camera rays for every pixel of the neural rendering (EG3D ref §1.8)."""
from __future__ import annotations

import torch


def sample_rays(cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cam2world [N,4,4] (OpenCV), normalised intrinsics [N,3,3] -> origins, dirs [N, R=res², 3].

    Pixel (row i, col j) looks through (u, v) = ((j+0.5)/res, (i+0.5)/res); rays are row-major.
    """
    n = cam2world.shape[0]
    dev, dt = cam2world.device, cam2world.dtype
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    sk = intrinsics[:, 0, 1, None]
    centres = (torch.arange(resolution, device=dev, dtype=dt) + 0.5) / resolution
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    u, v = u.reshape(1, -1).expand(n, -1), v.reshape(1, -1).expand(n, -1)  # [N,R]
    x_cam = (u - cx + cy * sk / fy - sk * v / fy) / fx
    y_cam = (v - cy) / fy
    p_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam), torch.ones_like(x_cam)], dim=-1)  # [N,R,4]
    # cam2world @ p (not p @ cam2world^T): same maths, but this order rounds exactly like the original.
    p_world = torch.bmm(cam2world, p_cam.transpose(1, 2)).transpose(1, 2)[..., :3]
    origins = cam2world[:, None, :3, 3].expand(-1, p_world.shape[1], -1)
    dirs = torch.nn.functional.normalize(p_world - origins, dim=-1)
    return origins, dirs
