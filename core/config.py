"""Typed view of EG3D's `rendering_kwargs` (EG3D ref §1.10), converted once at the boundary.

The generator keeps the original dict (it travels inside checkpoints both ways); the renderer reads
this dataclass. Missing keys take the original code's defaults (c_scale 0, white_back False, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal


@dataclass(frozen=True)
class RenderOptions:
    depth_resolution: int = 48
    """Stratified (coarse) samples per ray."""
    depth_resolution_importance: int = 48
    """Importance (fine) samples per ray; 0 disables the fine pass."""
    ray_start: float | Literal["auto"] = 2.25
    """Near bound along the normalised ray, or 'auto' (ray/box intersection)."""
    ray_end: float | Literal["auto"] = 3.3
    box_warp: float = 1.0
    """Side of the cube [-box_warp/2, box_warp/2]^3 that the planes cover."""
    white_back: bool = False
    disparity_space_sampling: bool = False
    clamp_mode: Literal["softplus"] = "softplus"
    density_noise: float = 0.0
    decoder_lr_mul: float = 1.0
    c_scale: float = 0.0
    """Multiplier on c fed to the mapping network (original default when the key is absent: 0)."""
    c_gen_conditioning_zero: bool = False
    superresolution_module: str = "training.superresolution.SuperresolutionHybrid8XDC"
    superresolution_noise_mode: Literal["none", "const", "random"] = "none"
    sr_antialias: bool = True
    image_resolution: int = 512
    avg_camera_radius: float = 2.7
    avg_camera_pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)
    avg_camera_fov: float = 18.837
    """Default camera FOV in degrees (FOV_to_intrinsics convention). Our extension, written by our
    trainer from the dataset's focal length; original checkpoints lack it: their tools use 18.837."""
    density_reg: float = 0.25
    density_reg_p_dist: float = 0.004
    reg_type: str = "l1"
    gpc_reg_prob: float | None = None
    extra: dict = field(default_factory=dict, compare=False)
    """Unrecognised keys, kept so that nothing in a checkpoint is dropped."""

    @classmethod
    def from_kwargs(cls, kw: dict) -> RenderOptions:
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in kw.items() if k in names}
        if "avg_camera_pivot" in known:
            known["avg_camera_pivot"] = tuple(float(v) for v in known["avg_camera_pivot"])
        for key in ("ray_start", "ray_end"):
            if key in known and known[key] != "auto":
                known[key] = float(known[key])
        if known.get("clamp_mode", "softplus") != "softplus":
            raise ValueError(f"clamp_mode {known['clamp_mode']!r} is not supported (only 'softplus')")
        return cls(**known, extra={k: v for k, v in kw.items() if k not in names})
