"""EG3D's GAN objective (ref §6.2): non-saturating logistic loss with dual discrimination,
lazy R1 on both real images, density regularisation, blur fade, pose-conditioning swap fade,
neural-rendering-resolution fade and optional ADA augmentation of everything D sees; plus one term of
our own, off by default: SR consistency.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.config import TrainOptions
from training.discriminator import filtered_resize


@dataclass(frozen=True)
class Schedule:
    """Values that fade with the number of images shown."""
    blur_sigma: float
    swapping_prob: float | None
    nrr: int


def schedule(opts: TrainOptions, cur_nimg: int) -> Schedule:
    blur_fade = opts.blur_fade_kimg * opts.batch / 32 * 1000
    blur = opts.blur_init_sigma * max(1 - cur_nimg / blur_fade, 0) if blur_fade > 0 else 0.0
    swap = None
    if opts.gen_pose_cond:
        a = min(cur_nimg / (opts.gpc_reg_fade_kimg * 1000), 1) if opts.gpc_reg_fade_kimg > 0 else 1
        swap = (1 - a) * 1 + a * opts.gpc_reg_prob
    nrr = opts.nrr_initial
    if opts.nrr_final is not None:
        a = min(cur_nimg / (opts.nrr_fade_kimg * 1000), 1) if opts.nrr_fade_kimg > 0 else 1
        nrr = int(round(opts.nrr_initial * (1 - a) + opts.nrr_final * a))
    return Schedule(blur, swap, nrr)


def blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable blur with taps 2^-(k/sigma)^2, k in [-3 sigma, 3 sigma], zero padding (size kept)."""
    radius = int(math.floor(sigma * 3))
    if radius <= 0:
        return img
    k = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    f = torch.exp2(-(k / sigma).square())
    f = f / f.sum()
    c = img.shape[1]
    img = F.conv2d(img, f.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(img, f.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


def raw_envelope(raw: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(lowest, highest) value of the raw pixels around each pixel (3x3 at the raw resolution), resized
    to `size`: the range a super-resolved pixel stays in when the SR sharpens without ringing."""
    hi = F.interpolate(F.max_pool2d(raw, 3, 1, 1), size=size, mode="nearest")
    lo = F.interpolate(-F.max_pool2d(-raw, 3, 1, 1), size=size, mode="nearest")
    return lo, hi


def sr_consistency(image: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """Not in EG3D: mean |area-downsampled SR image - raw rendering| plus the mean distance of each SR pixel
    outside raw_envelope, the raw image held fixed. The SR may sharpen an edge but not ring past it:
    the dark rim and pale halo a weak D lets through."""
    raw = raw.detach()
    down = F.interpolate(image, size=raw.shape[-2:], mode="area")
    lo, hi = raw_envelope(raw, image.shape[-2:])
    return (down - raw).abs().mean() + ((lo - image).clamp(min=0) + (image - hi).clamp(min=0)).mean()


class EG3DLoss:
    """accumulate(phase, ...) runs one phase's forward/backward; gradients land in G or D."""

    def __init__(self, G, D, opts: TrainOptions, augment=None):
        if opts.density_reg > 0 and opts.reg_type != "l1":
            raise ValueError(f"density regularisation type {opts.reg_type!r} is not supported (only 'l1')")
        self.G, self.D, self.opts, self.augment = G, D, opts, augment
        self.real_signs = torch.zeros(2)
        """Sum of sign(D(real)) and the count since the last read (ADA's overfitting heuristic r_t)."""

    def _gen_conditioning(self, c: torch.Tensor, swapping_prob: float | None) -> torch.Tensor:
        if swapping_prob is None:
            return torch.zeros_like(c)
        swap = torch.rand((c.shape[0], 1), device=c.device) < swapping_prob
        return torch.where(swap, torch.roll(c, 1, 0), c)

    def run_G(self, z: torch.Tensor, c: torch.Tensor, sched: Schedule, update_emas: bool = False):
        c_gen = self._gen_conditioning(c, sched.swapping_prob)
        ws = self.G.mapping(z, c_gen, update_emas=update_emas)
        if self.opts.style_mixing_prob > 0 and float(torch.rand(())) < self.opts.style_mixing_prob:
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            ws = ws.clone()
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), c, update_emas=False)[:, cutoff:]
        out = self.G.synthesis(ws, c, neural_rendering_resolution=sched.nrr, noise_mode="random", stochastic=True)
        return {"image": out["image"], "image_raw": out["image_raw"]}

    def run_D(self, img: dict[str, torch.Tensor], c: torch.Tensor, sched: Schedule,
              blurred: bool = False) -> torch.Tensor:
        """D on generated (blurred here) or real (already blurred) images, augmented when ADA is on."""
        if not blurred:
            img = {"image": blur(img["image"], sched.blur_sigma), "image_raw": img["image_raw"]}
        if self.augment is not None and self.augment.p > 0:
            img = self.augment(img)
        return self.D(img, c)

    def real_images(self, real: torch.Tensor, sched: Schedule) -> dict[str, torch.Tensor]:
        """Real image [-1,1] -> what D sees: {'image' blurred, 'image_raw' resized to nrr and blurred}."""
        raw = blur(filtered_resize(real, sched.nrr), sched.blur_sigma)
        return {"image": blur(real, sched.blur_sigma), "image_raw": raw}

    def accumulate(self, phase: str, real: torch.Tensor, real_c: torch.Tensor, gen_z: torch.Tensor,
                   gen_c: torch.Tensor, gain: float, cur_nimg: int) -> dict[str, float]:
        """Phases: Gmain, Greg, Dmain, Dreg, Dboth. Returns scalar stats for the log."""
        sched = schedule(self.opts, cur_nimg)
        stats: dict[str, float] = {}
        if phase == "Gmain":
            fake = self.run_G(gen_z, gen_c, sched)
            loss = F.softplus(-self.run_D(fake, gen_c, sched)).mean()
            stats["loss_G"] = loss.item()
            if self.opts.sr_consistency > 0:
                reg = sr_consistency(fake["image"], fake["image_raw"])
                stats["reg_sr"] = reg.item()
                loss = loss + reg * self.opts.sr_consistency
            loss.mul(gain).backward()
        elif phase == "Greg":
            loss = self._density_reg(gen_z, gen_c, sched)
            stats["reg_density"] = loss.item()
            loss.mul(gain).backward()
        elif phase in ("Dmain", "Dreg", "Dboth"):
            if phase != "Dreg":
                with torch.no_grad():
                    fake = self.run_G(gen_z, gen_c, sched, update_emas=True)
                logits = self.run_D(fake, gen_c, sched)
                loss_fake = F.softplus(logits)
                stats["loss_D_fake"] = loss_fake.mean().item()
                stats["scores_fake"] = logits.mean().item()
                loss_fake.mean().mul(gain).backward()
            do_main, do_r1 = phase != "Dreg", phase != "Dmain"
            reals = self.real_images(real, sched)
            reals = {k: v.detach().requires_grad_(do_r1) for k, v in reals.items()}
            logits = self.run_D(reals, real_c, sched, blurred=True)
            total = torch.zeros_like(logits)
            if do_main:
                self.real_signs += torch.tensor([logits.detach().sign().sum().item(), logits.shape[0]])
                loss_real = F.softplus(-logits)
                stats["loss_D_real"] = loss_real.mean().item()
                stats["scores_real"] = logits.mean().item()
                total = total + loss_real
            if do_r1:  # with respect to the images D saw: blurred while the blur fades out
                g_img, g_raw = torch.autograd.grad([logits.sum()], [reals["image"], reals["image_raw"]],
                                                   create_graph=True, only_inputs=True)
                penalty = g_img.square().sum([1, 2, 3]) + g_raw.square().sum([1, 2, 3])
                stats["reg_r1"] = penalty.mean().item()
                total = total + (penalty * (self.opts.gamma / 2)).unsqueeze(1)
            total.mean().mul(gain).backward()
        else:
            raise ValueError(f"unknown training phase {phase!r}")
        return stats

    def _density_reg(self, gen_z: torch.Tensor, gen_c: torch.Tensor, sched: Schedule) -> torch.Tensor:
        """L1 between raw densities at random points in [-1,1]^3 and at slightly perturbed points."""
        if sched.swapping_prob is None:
            c_gen = torch.zeros_like(gen_c)
        else:
            c_gen = torch.roll(gen_c, 1, 0) if torch.rand(()) < sched.swapping_prob else gen_c
        ws = self.G.mapping(gen_z, c_gen, update_emas=False)
        pts = torch.rand((gen_z.shape[0], 1000, 3), device=gen_z.device) * 2 - 1
        perturbed = pts + torch.randn_like(pts) * self.opts.density_reg_p_dist
        planes = self.G.planes(ws, noise_mode="random")
        sigma = self.G.sample_planes(planes, torch.cat([pts, perturbed], dim=1))["sigma"]
        return F.l1_loss(sigma[:, :1000], sigma[:, 1000:]) * self.opts.density_reg
