"""Cameras: EG3D's 25-number label, its pose samplers, OpenGL matrices and the viewer's orbit camera.

Conventions (EG3D ref §4): world +y up, the subject faces +z. cam2world is OpenCV-style (camera +x right,
+y down, +z forward); the label is `[cam2world row-major (16) | normalised intrinsics row-major (9)]`.
Everything here is float32, like the labels the original code feeds its networks.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

DEFAULT_FOV_DEG = 18.837
"""The original tools' default field of view (focal ~4.2634 through `fov_to_intrinsics`)."""
ORIGINAL_PI = 3.14
"""The truncated pi that gen_videos and the original visualizer use for the frontal pose and the orbit."""
ORIGINAL_FRONTAL = ORIGINAL_PI / 2
MAX_PITCH = math.pi / 2 - 0.05
"""|pitch offset| limit of OrbitCamera: keeps the camera off the poles, where 'world up' degenerates."""
MIN_RADIUS = 0.1
Vec3 = tuple[float, float, float]
View = Literal["front", "left", "right", "top", "back"]


# ---------------------------------------------------------------------------------------------------
# Label and intrinsics

def camera_label(cam2world: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """cam2world [B,4,4] + intrinsics [3,3] or [B,3,3] -> label [B,25] (EG3D ref §4.1)."""
    if cam2world.ndim != 3 or cam2world.shape[1:] != (4, 4):
        raise ValueError(f"cam2world must have shape [B,4,4], got {list(cam2world.shape)}")
    b = cam2world.shape[0]
    if intrinsics.shape == (3, 3):
        intrinsics = intrinsics.expand(b, 3, 3)
    if intrinsics.shape != (b, 3, 3):
        raise ValueError(f"intrinsics must have shape [3,3] or [{b},3,3], got {list(intrinsics.shape)}")
    intrinsics = intrinsics.to(device=cam2world.device, dtype=cam2world.dtype)
    return torch.cat([cam2world.reshape(b, 16), intrinsics.reshape(b, 9)], dim=1)


def split_label(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """label [B,25] (or [25]) -> (cam2world [B,4,4], intrinsics [B,3,3])."""
    if c.shape[-1] != 25 or c.ndim not in (1, 2):
        raise ValueError(f"a camera label must have shape [B,25] or [25], got {list(c.shape)}")
    c = c.reshape(-1, 25)
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3)


def intrinsics_from_focal(focal: float, cx: float = 0.5, cy: float = 0.5,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised intrinsics [3,3] with fx = fy = focal (in units of the image size)."""
    if not focal > 0:
        raise ValueError(f"focal length must be positive, got {focal}")
    return torch.tensor([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]],
                        dtype=torch.float32, device=device)


def fov_to_focal(fov_deg: float) -> float:
    """The original FOV formula, 1.414 and 3.14159 included: the 'fov' is the diagonal FOV of the
    normalised square image (EG3D ref §4.2). 18.837 -> 4.2634, 45 -> 1.7074."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    return 1.0 / (math.tan(fov_deg * 3.14159 / 360) * 1.414)


def fov_to_intrinsics(fov_deg: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Intrinsics [3,3] for a FOV in degrees, kept as a float.

    The original gen_samples declares its --fov-deg option as an int, so its default 18.837 becomes
    18 (focal ~4.465); that bug is deliberately not reproduced here.
    """
    return intrinsics_from_focal(fov_to_focal(float(fov_deg)), device=device)


def focal_to_fov(focal: float) -> float:
    """Inverse of `fov_to_focal` (same 1.414 and 3.14159 constants)."""
    if not focal > 0:
        raise ValueError(f"focal length must be positive, got {focal}")
    return math.atan(1.0 / (focal * 1.414)) * 360 / 3.14159


# ---------------------------------------------------------------------------------------------------
# Pose samplers (EG3D ref §4.2)

def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / torch.norm(v, dim=-1, keepdim=True)


def _cam2world(forward: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """forward, origin [B,3] -> OpenCV cam2world [B,4,4]; world up (0,1,0), no roll."""
    up = torch.zeros_like(forward)
    up[:, 1] = 1.0
    right = -_normalize(torch.cross(up, forward, dim=-1))
    down = _normalize(torch.cross(forward, right, dim=-1))  # OpenCV +y: points to world -y
    m = torch.eye(4, dtype=forward.dtype, device=forward.device).repeat(forward.shape[0], 1, 1)
    m[:, :3, :3] = torch.stack([right, down, forward], dim=-1)
    m[:, :3, 3] = origin
    return m


def _sphere_point(h: torch.Tensor, v: torch.Tensor, radius: float) -> torch.Tensor:
    """yaw h, polar parameter v [B,1] -> point [B,3] on a sphere around the origin.

    v is clamped to [1e-5, pi - 1e-5] and mapped by phi = arccos(1 - 2 v / pi) (uniform on the sphere).
    """
    v = torch.clamp(v, 1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * (v / math.pi))
    p = torch.zeros(h.shape[0], 3, dtype=h.dtype, device=h.device)
    p[:, 0:1] = radius * torch.sin(phi) * torch.cos(math.pi - h)
    p[:, 2:3] = radius * torch.sin(phi) * torch.sin(math.pi - h)
    p[:, 1:2] = radius * torch.cos(phi)
    return p


def _pivot(pivot: Sequence[float], batch: int, device) -> torch.Tensor:
    if len(pivot) != 3:
        raise ValueError(f"pivot must have 3 coordinates, got {pivot!r}")
    return torch.tensor([float(x) for x in pivot], dtype=torch.float32, device=device).expand(batch, 3)


def _look(yaw: float | torch.Tensor, pitch: float | torch.Tensor, radius: float, look_at: torch.Tensor | None,
          around: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """Camera on a sphere of `radius` around `around` (None: the world origin) at absolute yaw/pitch (floats,
    or [B,1] tensors), looking at `look_at` (None: the world origin) -> cam2world [B,4,4]. Draws no random
    numbers."""
    h, v = (a if isinstance(a, torch.Tensor) else torch.full((1, 1), float(a), device=device) for a in (yaw, pitch))
    origin = _sphere_point(h, v, radius)
    origin = origin if around is None else origin + around
    return _cam2world(_normalize(-origin if look_at is None else look_at - origin), origin)


def lookat_pose(yaw: float, pitch: float, radius: float, pivot: Sequence[float] = (0.0, 0.0, 0.0),
                batch: int = 1, device: torch.device | str | None = None, *,
                yaw_std: float = 0.0, pitch_std: float = 0.0) -> torch.Tensor:
    """The original LookAt sampler -> cam2world [B,4,4].

    yaw/pitch are absolute (pi/2, pi/2 = frontal camera on +z); the centre lies on a sphere of `radius`
    around the WORLD ORIGIN and the camera looks at `pivot`. Like the original it always draws
    torch.randn([B,1]) for the yaw noise, then for the pitch noise (even with std 0), so the global RNG
    advances exactly as in the original scripts.
    """
    h = yaw + torch.randn(batch, 1, device=device) * yaw_std
    v = pitch + torch.randn(batch, 1, device=device) * pitch_std
    return _look(h, v, radius, _pivot(pivot, batch, device))


def gaussian_pose(yaw: float, pitch: float, yaw_std: float = 0.0, pitch_std: float = 0.0,
                  radius: float = 1.0, batch: int = 1,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """The original Gaussian sampler: noise = randn([B,1]) * std (yaw first, then pitch); the camera
    looks at the world origin. -> cam2world [B,4,4]."""
    h = yaw + torch.randn(batch, 1, device=device) * yaw_std
    return _look(h, pitch + torch.randn(batch, 1, device=device) * pitch_std, radius, None)


def uniform_pose(yaw: float, pitch: float, yaw_std: float = 0.0, pitch_std: float = 0.0,
                 radius: float = 1.0, batch: int = 1,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The original Uniform sampler: noise = (rand([B,1]) * 2 - 1) * std (yaw first, then pitch); the
    camera looks at the world origin. -> cam2world [B,4,4]."""
    h = yaw + (torch.rand(batch, 1, device=device) * 2 - 1) * yaw_std
    return _look(h, pitch + (torch.rand(batch, 1, device=device) * 2 - 1) * pitch_std, radius, None)


# ---------------------------------------------------------------------------------------------------
# Viewer camera

@dataclass
class OrbitCamera:
    """The viewer's camera: plain floats, mutated by the UI, turned into a label on demand.

    yaw/pitch are offsets (radians) from the frontal pose; yaw > 0 moves the camera towards +x,
    pitch > 0 moves it down (original convention). Unlike the original sampler, whose centre circles
    the world origin, this camera circles its `pivot`: the viewer orbits what it looks at, so the
    subject stays centred at a constant distance after a pan. With pivot (0,0,0) both coincide.
    """
    yaw: float = 0.0
    pitch: float = 0.0
    radius: float = 2.7
    pivot: Vec3 = (0.0, 0.0, 0.2)
    fov_deg: float = DEFAULT_FOV_DEG

    def __post_init__(self) -> None:
        if len(self.pivot) != 3:
            raise ValueError(f"pivot must have 3 coordinates, got {self.pivot!r}")
        fov_to_focal(self.fov_deg)  # validates the FOV
        self.yaw, self.fov_deg = float(self.yaw), float(self.fov_deg)
        self.pitch = min(max(float(self.pitch), -MAX_PITCH), MAX_PITCH)
        self.radius = max(float(self.radius), MIN_RADIUS)
        self.pivot = tuple(float(x) for x in self.pivot)

    @classmethod
    def from_options(cls, options, fov_deg: float | None = None, yaw: float = 0.0, pitch: float = 0.0) -> OrbitCamera:
        """The model's average radius, pivot and FOV (unless fov_deg), at yaw/pitch offsets (default frontal)."""
        return cls(yaw, pitch, options.avg_camera_radius, tuple(options.avg_camera_pivot),
                   fov_deg or options.avg_camera_fov)

    def cam2world(self, device: torch.device | str | None = None) -> torch.Tensor:
        """OpenCV cam2world [1,4,4]."""
        pivot = _pivot(self.pivot, 1, device)
        return _look(math.pi / 2 + self.yaw, math.pi / 2 + self.pitch, self.radius, pivot, pivot, device)

    def intrinsics(self, device: torch.device | str | None = None) -> torch.Tensor:
        return fov_to_intrinsics(self.fov_deg, device)

    def label(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The rendering camera label [1,25]."""
        return camera_label(self.cam2world(device), self.intrinsics(device))

    def orbit(self, dx: float, dy: float) -> None:
        """Add dx to yaw and dy to pitch (radians); pitch stays within +-MAX_PITCH."""
        self.yaw += float(dx)
        self.pitch = min(max(self.pitch + float(dy), -MAX_PITCH), MAX_PITCH)

    def pan(self, dx: float, dy: float) -> None:
        """Move the pivot (and the camera with it) by dx * radius along the camera's right axis and
        dy * radius along its up axis."""
        m = self.cam2world()[0].double()
        right, up = m[:3, 0], -m[:3, 1]
        shift = self.radius * (float(dx) * right + float(dy) * up)
        self.pivot = tuple(float(p + s) for p, s in zip(self.pivot, shift.tolist()))

    def dolly(self, amount: float) -> None:
        """radius *= exp(-amount): amount > 0 moves towards the pivot; radius stays >= MIN_RADIUS."""
        self.radius = max(self.radius * math.exp(-float(amount)), MIN_RADIUS)

    def reset(self, options) -> None:
        """Back to the frontal pose at the model's average radius, pivot and FOV (as `from_options`)."""
        vars(self).update(vars(type(self).from_options(options)))

    def snap(self, view: View) -> None:
        """Jump to a canonical view (radius and pivot kept). 'right' puts the camera on +x, 'left'
        on -x (as seen by the viewer facing the subject), 'top' as high as MAX_PITCH allows."""
        angles = {"front": (0.0, 0.0), "right": (math.pi / 2, 0.0), "left": (-math.pi / 2, 0.0),
                  "back": (math.pi, 0.0), "top": (0.0, -MAX_PITCH)}
        if view not in angles:
            raise ValueError(f"unknown view {view!r} (expected one of {', '.join(angles)})")
        self.yaw, self.pitch = angles[view]


# ---------------------------------------------------------------------------------------------------
# Tool cameras

def frontal_label(options, fov_deg: float | None = None, device: torch.device | str | None = None,
                  *, yaw: float = 0.0, pitch: float = 0.0) -> torch.Tensor:
    """Conditioning camera label [1,25]: LookAt(pi/2 + yaw, pi/2 + pitch) on a sphere of
    avg_camera_radius around the world origin, looking at avg_camera_pivot (EG3D ref §4.4).

    Uses the exact pi/2 (as gen_samples); does not draw from the RNG.
    """
    pose = _look(math.pi / 2 + yaw, math.pi / 2 + pitch, options.avg_camera_radius,
                 _pivot(options.avg_camera_pivot, 1, device), device=device)
    return camera_label(pose, fov_to_intrinsics(fov_deg or options.avg_camera_fov, device))


def video_orbit(frame: int, num_frames: int, yaw_range: float = 0.35, pitch_range: float = 0.25,
                radius: float = 2.7, pivot: Sequence[float] = (0.0, 0.0, 0.2),
                frontal: float = ORIGINAL_FRONTAL,
                device: torch.device | str | None = None) -> torch.Tensor:
    """gen_videos' camera path (EG3D ref §7.2) -> cam2world [1,4,4].

    t = frame / num_frames; yaw = frontal + yaw_range sin(2 * 3.14 t), pitch = frontal - 0.05 +
    pitch_range cos(2 * 3.14 t); LookAt around the world origin. 3.14 (not pi) as in the original, so
    the loop closes only approximately.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    angle = 2 * ORIGINAL_PI * frame / num_frames
    return _look(frontal + yaw_range * math.sin(angle), frontal - 0.05 + pitch_range * math.cos(angle), radius,
                 _pivot(pivot, 1, device), device=device)


def orbit_360(frame: int, num_frames: int, pitch: float = 0.0, radius: float = 2.7,
              pivot: Sequence[float] = (0.0, 0.0, 0.2),
              device: torch.device | str | None = None) -> torch.Tensor:
    """A full turn around the pivot (OrbitCamera convention, starting frontal) -> cam2world [1,4,4]."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return OrbitCamera(yaw=2 * math.pi * frame / num_frames, pitch=pitch, radius=radius,
                       pivot=tuple(pivot)).cam2world(device)
