"""ADA: adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data").

Every image D sees (real and generated alike) goes through the same random pipeline; each transform
is applied to a sample with probability p, so D can never tell augmented from clean data and G is not
pushed to reproduce the augmentations. With `--aug ada`, p follows the overfitting heuristic
r_t = E[sign(D(real))]: every few steps p moves up when r_t is above the target and down when below,
by an amount that would take it from 0 to 1 in `ada_kimg` thousand images.

The pipeline here: x-flip, 90-degree rotations, integer translation, isotropic scaling, rotation,
anisotropic scaling, fractional translation (one affine resampling with reflection padding), then
brightness, contrast, luma flip, hue rotation and saturation (one colour matrix). Both images of the
dual discriminator's input get the same draw.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)


def _rot(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, z, s, c, z, z, z, o], 1).view(-1, 3, 3)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(sx), torch.ones_like(sx)
    return torch.stack([sx, z, z, z, sy, z, z, z, o], 1).view(-1, 3, 3)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    z, o = torch.zeros_like(tx), torch.ones_like(tx)
    return torch.stack([o, z, tx, z, o, ty, z, z, o], 1).view(-1, 3, 3)


class AugmentPipe:
    """Callable on D's input dict {'image', 'image_raw'} -> augmented dict; `p` is the strength."""

    def __init__(self, p: float = 0.0, translate_std: float = 0.125, scale_std: float = 0.2,
                 aniso_std: float = 0.2, brightness_std: float = 0.2, contrast_std: float = 0.5,
                 saturation_std: float = 1.0):
        self.p = float(p)
        self.translate_std, self.scale_std, self.aniso_std = translate_std, scale_std, aniso_std
        self.brightness_std, self.contrast_std, self.saturation_std = brightness_std, contrast_std, saturation_std

    def _gate(self, n: int, device, p: float | None = None) -> torch.Tensor:
        return (torch.rand(n, device=device) < (self.p if p is None else p)).float()

    def geometry(self, n: int, device) -> torch.Tensor:
        """Per-sample 3x3 matrices mapping output to input coordinates in [-1, 1]."""
        eye = torch.eye(3, device=device).expand(n, 3, 3)
        m = eye.clone()
        flip = 1 - 2 * (self._gate(n, device) * torch.randint(0, 2, (n,), device=device))
        m = m @ _scale(flip, torch.ones(n, device=device))
        quarter = self._gate(n, device) * torch.randint(0, 4, (n,), device=device)
        m = m @ _rot(quarter * math.pi / 2)
        shift = torch.round((torch.rand(n, 2, device=device) * 2 - 1) * self.translate_std * 64) / 64 * 2
        shift = shift * self._gate(n, device)[:, None]
        m = m @ _translate(shift[:, 0], shift[:, 1])
        s = torch.exp2(torch.randn(n, device=device) * self.scale_std * self._gate(n, device))
        m = m @ _scale(s, s)
        p_rot = 1 - math.sqrt(max(1 - self.p, 0))  # rotation is drawn twice (before and after aniso)
        m = m @ _rot((torch.rand(n, device=device) * 2 - 1) * math.pi * self._gate(n, device, p_rot))
        a = torch.exp2(torch.randn(n, device=device) * self.aniso_std * self._gate(n, device))
        m = m @ _scale(a, 1 / a)
        m = m @ _rot((torch.rand(n, device=device) * 2 - 1) * math.pi * self._gate(n, device, p_rot))
        t = torch.randn(n, 2, device=device) * self.translate_std * 2 * self._gate(n, device)[:, None]
        return m @ _translate(t[:, 0], t[:, 1])

    def colour(self, n: int, device) -> torch.Tensor:
        """Per-sample 4x4 matrices on homogeneous RGB in [-1, 1]."""
        luma = _LUMA.to(device)
        m = torch.eye(4, device=device).repeat(n, 1, 1)
        b = torch.randn(n, device=device) * self.brightness_std * self._gate(n, device)
        shift = torch.eye(4, device=device).repeat(n, 1, 1)
        shift[:, :3, 3] = b[:, None]
        m = shift @ m
        c = torch.exp2(torch.randn(n, device=device) * self.contrast_std * self._gate(n, device))
        m = torch.diag_embed(torch.stack([c, c, c, torch.ones_like(c)], 1)) @ m
        outer = torch.outer(luma, luma)
        flip = self._gate(n, device) * torch.randint(0, 2, (n,), device=device)
        m = (torch.eye(4, device=device) - 2 * outer * flip[:, None, None]) @ m
        theta = (torch.rand(n, device=device) * 2 - 1) * math.pi * self._gate(n, device)
        m = _rotate_about(luma[:3], theta) @ m
        sat = torch.exp2(torch.randn(n, device=device) * self.saturation_std * self._gate(n, device))
        m = (outer + (torch.eye(4, device=device) - outer) * sat[:, None, None]) @ m
        return m

    def __call__(self, img: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = img["image"]
        n, dev = image.shape[0], image.device
        geo, col = self.geometry(n, dev), self.colour(n, dev)
        return {k: _apply_colour(_apply_geometry(img[k], geo), col) for k in ("image", "image_raw")}


def _rotate_about(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """4x4 rotations by theta around a unit 3-vector (Rodrigues), one per angle."""
    k = torch.zeros(3, 3, device=axis.device)
    k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -axis[2], axis[1], axis[2], -axis[0], -axis[1], axis[0]
    s, c = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    r3 = torch.eye(3, device=axis.device) + s * k + (1 - c) * (k @ k)
    out = torch.eye(4, device=axis.device).repeat(len(theta), 1, 1)
    out[:, :3, :3] = r3
    return out


def _apply_geometry(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(m[:, :2, :].to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _apply_colour(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    return (m[:, :3, :3].to(x.dtype) @ flat + m[:, :3, 3:].to(x.dtype)).reshape(n, c, h, w)


def adjust_p(p: float, sign_mean: float, target: float, images: int, ada_kimg: float) -> float:
    """One ADA update: p moves by images/(ada_kimg*1000) towards more augmentation when D is overconfident."""
    diff = sign_mean - target
    step = images / (ada_kimg * 1000) * ((diff > 0) - (diff < 0))
    return float(min(max(p + step, 0.0), 1.0))
