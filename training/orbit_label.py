"""A camera label whose yaw, pitch and focal length are parameters: the view an inversion fits or scores."""
from __future__ import annotations

import math

import torch
from torch import nn

from core.cameras import _cam2world, _normalize, _sphere_point, focal_to_fov, fov_to_focal, split_label


class OrbitLabel(nn.Module):
    """Differentiable camera label [1,25]: `render`'s yaw/pitch offsets (radians, pitch > 0 lower) on a
    sphere of `radius` around the world origin, looking at the pivot, with FOV from log focal."""

    def __init__(self, yaw: float, pitch: float, fov_deg: float, radius: float, pivot, fit_fov: bool = False):
        super().__init__()
        self.yaw = nn.Parameter(torch.tensor(float(yaw)))
        self.pitch = nn.Parameter(torch.tensor(float(pitch)))
        self.log_focal = nn.Parameter(torch.tensor(math.log(fov_to_focal(fov_deg))), requires_grad=fit_fov)
        self.radius = float(radius)
        self.register_buffer("pivot", torch.tensor([float(x) for x in pivot]).view(1, 3))

    @classmethod
    def from_label(cls, label: torch.Tensor, pivot) -> OrbitLabel:
        """The yaw, pitch, radius and FOV of a label [25] (inverse of the sphere parametrisation)."""
        c2w, K = split_label(label.detach().cpu().float())
        x, y, z = (float(v) for v in c2w[0, :3, 3])
        radius = math.sqrt(x * x + y * y + z * z)
        yaw = math.pi - math.atan2(z, x) - math.pi / 2
        yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
        pitch = -math.pi / 2 * y / radius
        return cls(yaw, pitch, focal_to_fov(float(K[0, 0, 0])), radius, pivot)

    @property
    def fov_deg(self) -> float:
        return focal_to_fov(math.exp(self.log_focal.item()))

    def forward(self, yaw_offset: float = 0.0, pitch_offset: float = 0.0) -> torch.Tensor:
        h = (math.pi / 2 + self.yaw + yaw_offset).view(1, 1)
        v = (math.pi / 2 + self.pitch + pitch_offset).view(1, 1)
        origin = _sphere_point(h, v, self.radius)
        c2w = _cam2world(_normalize(self.pivot - origin), origin)
        f = self.log_focal.exp()
        one, zero, half = torch.ones_like(f), torch.zeros_like(f), torch.full_like(f, 0.5)
        K = torch.stack([f, zero, half, zero, f, half, zero, zero, one]).view(1, 9)
        return torch.cat([c2w.reshape(1, 16), K.to(c2w)], dim=1)
