"""GAN inversion of a tri-plane generator from one image: W / W+ projection and pivotal tuning.

Projection follows StyleGAN2's projector (Karras et al. 2020, §5 and appendix D): start from the mean
w (here: the mean of mapping(z, c) for the target's camera c) or, on request and with the camera given,
from the random latent that matches the image best (a model of several object kinds has one basin per
kind), optimise w with Adam under a learning rate that ramps up over the first 5% of the steps and down
(cosine) over the last 25%, add Gaussian noise of 0.05 w_std (1 - t/0.75)² to w early on, and optimise
the generator's noise maps under the multi-scale autocorrelation penalty, renormalising them after every
step. `w+` continues from the W solution with one w per layer. Pivotal tuning (Roich et al. 2021, PTI)
then fine-tunes the generator's synthesis weights around that pivot, with the locality regulariser:
images at w_r = w_p + alpha (w_z - w_p)/|w_z - w_p| must not change, so other latents stay intact.

3D additions: a density-smoothness term (EG3D's density regulariser) keeps the optimised geometry
free of floaters; during tuning the pivot's depth and opacity at unseen views are anchored to those
of the untuned generator, so fitting the one view does not reshape what it does not show, and a mirror
prior asks for the target's silhouette, flipped, from the camera mirrored in the model's x=0 plane (the
plane of symmetry of faces and of the toys; 3D GAN inversion with a symmetry prior, Yin et al. 2023, uses
the mirrored image likewise). Without a camera, training.camera_estimate finds the view (a coarse grid of
views rendered from a bank of latents, then short W fits with the camera held fixed) and the projection
runs at that view.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.progress import Cancelled, Progress
from training.camera_estimate import CameraSearch, foreground_mask, run_camera_estimate
from training.orbit_label import OrbitLabel
from training.perceptual import feature_distance

Space = Literal["w", "w+"]
TunedPart = Literal["all", "backbone", "decoder+sr", "sr"]
TUNED_PARTS: dict[str, tuple[str, ...]] = {
    "all": ("backbone.synthesis.", "decoder.", "superresolution."),
    "backbone": ("backbone.synthesis.",),
    "decoder+sr": ("decoder.", "superresolution."),
    "sr": ("superresolution.",),
}
"""What pivotal tuning may change, by parameter-name prefix (the mapping and noise strengths never)."""


# ---------------------------------------------------------------------------------------------------
# Loss terms

def multiscale_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE of two images at full, 1/2 and 1/4 size."""
    loss = 0.0
    for _ in range(3):
        loss = loss + F.mse_loss(x, y) / 3
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return loss


def noise_penalty(noises: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2 projector's noise regulariser: squared autocorrelation at lag 1 (x and y, wrapping)
    of each noise map and of its 2x average-pooled pyramid down to 8x8."""
    reg = torch.zeros(())
    for n in noises:
        x = n[None, None]
        while True:
            reg = reg + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[-1] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


def density_smoothness(G, planes: torch.Tensor, points: int = 1000) -> torch.Tensor:
    """EG3D's density regulariser: L1 between raw densities at random points in the box and at points
    moved by density_reg_p_dist (ref §6.2)."""
    half = G.options.box_warp / 2
    pts = (torch.rand(1, points, 3, device=planes.device) * 2 - 1) * half
    moved = pts + torch.randn_like(pts) * G.rendering_kwargs.get("density_reg_p_dist", 0.004)
    sigma = G.sample_planes(planes, torch.cat([pts, moved], dim=1))["sigma"]
    return F.l1_loss(sigma[:, :points], sigma[:, points:])


def mean_w(G, c: torch.Tensor, samples: int, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """Mean w [1,1,w_dim] of mapping(z, c) over `samples` draws of z (from `generator`, on the CPU), and
    w_std = sqrt(E|w - w_avg|²); c [1,25] is moved to the generator's device."""
    device = next(G.parameters()).device
    z = torch.randn(samples, G.z_dim, generator=generator).to(device)
    with torch.no_grad():
        w = G.mapping(z, c.to(device).expand(samples, -1))[:, :1]
    w_avg = w.mean(dim=0, keepdim=True)
    return w_avg, float((w - w_avg).square().sum(dim=2).mean().sqrt())


def _lr_ramp(t: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleGAN2 projector learning-rate factor at progress t in [0,1]."""
    down = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / rampdown) * math.pi)
    return down * min(1.0, t / rampup) if rampup > 0 else down


# ---------------------------------------------------------------------------------------------------
# Options and result

@dataclass(frozen=True)
class InversionOptions:
    steps: int = 300
    """W (and W+) projection steps; with w+ the first half optimises one w, the second half all ws."""
    space: Space = "w"
    tune_steps: int = 0
    """Pivotal tuning steps after projection (0 = none)."""
    lr: float = 0.01
    tune_lr: float = 3e-3
    tune_params: TunedPart = "all"
    """Which weights pivotal tuning changes: all of synthesis (tri-plane generator, decoder, SR), the
    tri-plane generator only, the decoder and SR, or SR only."""
    tune_rampdown: float = 0.3
    """Fraction of the tuning steps over which the tuning rate ramps down (cosine) to 0; 0 = constant."""
    tune_reg_every: int = 1
    """Tuning evaluates the anchor and locality regularisers (most of a step's cost) every this many steps,
    at this many times their weight (lazy regularisation, as StyleGAN2 does for R1)."""
    initial_w_noise: float = 0.05
    """Std of the noise added to w at the start, in units of w_std; it decays to 0 at 75% of the steps."""
    noise_weight: float = 1e5
    perceptual_weight: float = 1.0
    density_weight: float = 0.25
    wplus_weight: float = 1e-3
    """Penalty on the spread of the W+ layers around their mean, per dimension, in units of w_std²."""
    locality_weight: float = 0.02
    locality_alpha: float = 30.0
    anchor_weight: float = 0.2
    """Weight of the depth/opacity anchor at unseen views during tuning."""
    symmetry_weight: float = 0.5
    """Weight of the mirror prior during tuning: an object symmetric about the model's x=0 plane (faces, the
    toys) seen from the mirrored camera shows the target's silhouette flipped left to right (0 = off)."""
    refine_steps: int = 25
    """With the camera estimated: steps of each fixed-camera W fit that scores a view in the fine search
    (0: the best coarse grid view as is); camera_search, when given, overrides it."""
    starts: int = 0
    """Random latents (mapping(z, c) truncated at psi 0.7) scored against the target besides the mean w;
    projection starts from the best of them once the view is known. Off by default: it helps some
    targets by several dB and costs others as much (BENCHMARKS.md)."""
    camera_search: CameraSearch | None = None
    """The camera estimate's settings (training.camera_estimate) when not the defaults."""
    w_avg_samples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        """Tuning settings a run could not use fail here, in one line (also for options sent remotely)."""
        if self.tune_params not in TUNED_PARTS:
            raise ValueError(f"tune_params must be one of {', '.join(TUNED_PARTS)}, not {self.tune_params!r}")
        if self.tune_reg_every < 1:
            raise ValueError(f"tune_reg_every must be at least 1, not {self.tune_reg_every}")
        if not 0.0 <= self.tune_rampdown <= 1.0:
            raise ValueError(f"tune_rampdown must be within 0..1, not {self.tune_rampdown}")
        if not self.symmetry_weight >= 0.0:
            raise ValueError(f"symmetry_weight must be 0 or more, not {self.symmetry_weight}")


@dataclass
class InversionResult:
    ws: torch.Tensor
    """[1,num_ws,w_dim], detached."""
    camera: torch.Tensor
    """label [25]."""
    yaw: float
    pitch: float
    fov_deg: float
    noise: dict[str, torch.Tensor]
    G: nn.Module | None = None
    """The tuned generator (tune_steps > 0)."""
    loss: float = float("nan")
    history: list[tuple[str, int, float]] = field(default_factory=list)
    interrupted: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# The optimiser

class Inverter:
    """Inverts one target image [1,3,R,R] in [-1,1]. `perceptual(image, raw)` -> feature maps or None."""

    def __init__(self, G, target: torch.Tensor, options: InversionOptions = InversionOptions(),
                 perceptual: Callable | None = None, progress: Progress | None = None,
                 on_best: Callable[[torch.Tensor, torch.Tensor, nn.Module], None] | None = None):
        """`on_best(ws, label [1,25], G)`: called (no grad needed) whenever the best projection so far
        improves, and after every tuning step with the pivot and the generator being tuned, for live
        views; it must not modify its arguments."""
        self.G = copy.deepcopy(G).eval().requires_grad_(False)
        self.opts, self.progress, self.perceptual = options, progress, perceptual
        self.on_best = on_best
        self.device = next(self.G.parameters()).device
        self.target = target.to(self.device)
        nrr = self.G.neural_rendering_resolution
        self.target_raw = F.interpolate(self.target, size=(nrr, nrr), mode="area")
        self.target_feats = None
        if perceptual is not None:
            with torch.no_grad():
                self.target_feats = perceptual(self.target, self.target_raw)
        self.noise_bufs = {name: buf for name, buf in self.G.named_buffers() if name.endswith("noise_const")
                           and name.startswith("backbone.")}
        self.history: list[tuple[str, int, float]] = []
        self.done, self.total = 0, 0
        self.generator = torch.Generator(device="cpu").manual_seed(options.seed)

    # ---- pieces ------------------------------------------------------------------------------------
    def _tick(self, phase: str, step: int, loss: float) -> None:
        self.history.append((phase, step, loss))
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.done, self.total, f"{phase} loss {loss:.4f}")

    def _objective(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image distance to the target, zero exactly when the displayed image equals it: the final image
        clamped to [-1,1] (the super-resolution overshoots where a photo cannot; the clamp passes
        gradients straight through, else an overshooting pixel could never be pulled back), and the
        discriminator's raw input taken from that image as it is for the target (the target has no
        neural rendering)."""
        image = out["image"] + (out["image"].clamp(-1, 1) - out["image"]).detach()
        loss = multiscale_mse(image, self.target)
        if self.perceptual is not None:
            raw = F.interpolate(image, size=self.target_raw.shape[-2:], mode="area")
            loss = loss + self.opts.perceptual_weight * feature_distance(
                self.perceptual(image, raw), self.target_feats).sum()
        return loss

    def _render(self, G, ws: torch.Tensor, c: torch.Tensor, sr: bool = True):
        planes = G.planes(ws)
        return planes, G.render_planes(planes, ws, c, superresolution=sr)

    def _mirror(self, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The mirror prior's camera (label [1,25] mirrored in x=0) and silhouette (the target's foreground
        flipped left to right, at the neural rendering resolution); None when its weight is 0."""
        if self.opts.symmetry_weight <= 0:
            return None
        mirrored = label.reshape(25).clone()  # cam2world D M D with D = diag(-1,1,1,1), principal point 1 - cx
        flip = torch.tensor([-1.0, 1.0, 1.0, 1.0], device=label.device)
        mirrored[:16] = (flip[:, None] * mirrored[:16].reshape(4, 4) * flip[None]).reshape(16)
        mirrored[18] = 1 - mirrored[18]
        mirrored = mirrored[None].to(self.device)
        white = bool(self.G.rendering_kwargs.get("white_back", True))
        return mirrored, foreground_mask(self.target_raw, white).flip(-1)

    def _start_w(self, w_avg: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """[1,1,w_dim]: the best of the mean w and `starts` truncated random latents by the image objective."""
        if self.opts.starts <= 0:
            return w_avg
        z = torch.randn(self.opts.starts, self.G.z_dim, generator=self.generator).to(self.device)
        with torch.no_grad():
            w = self.G.mapping(z, label.expand(z.shape[0], -1))[:, :1]
            candidates = torch.cat([w_avg, w_avg + 0.7 * (w - w_avg)])
            losses = [self._objective(self._render(self.G, cand[None].expand(-1, self.G.num_ws, -1), label)[1]).item()
                      for cand in candidates]
        best = min(range(len(losses)), key=losses.__getitem__)
        return candidates[best:best + 1]

    # ---- camera estimate ---------------------------------------------------------------------------
    def camera_search(self) -> CameraSearch:
        """The camera estimate's settings: opts.camera_search, else the defaults with refine_steps."""
        return self.opts.camera_search or CameraSearch(fine_steps=self.opts.refine_steps)

    def estimate_camera(self, fov_deg: float) -> OrbitLabel:
        """training.camera_estimate's view (a coarse grid from a latent bank, then fixed-camera fits)."""
        o = self.G.options
        c = OrbitLabel(0.0, 0.0, fov_deg, o.avg_camera_radius, o.avg_camera_pivot)().detach()
        w_avg, _ = mean_w(self.G, c, self.opts.w_avg_samples, self.generator)
        yaw, pitch = run_camera_estimate(self.G, self.target, w_avg, fov_deg, self.camera_search(), self.opts.seed,
                                         self._tick, self.progress)
        return OrbitLabel(yaw, pitch, fov_deg, o.avg_camera_radius, o.avg_camera_pivot).to(self.device)

    # ---- projection --------------------------------------------------------------------------------
    def project(self, label: torch.Tensor, state: dict) -> None:
        """W (then W+) projection at the camera label [1,25]; `state` always holds the best ws/noise so far."""
        G, opts = self.G, self.opts
        w_avg, w_std = mean_w(self.G, label, opts.w_avg_samples, self.generator)
        noises = list(self.noise_bufs.values())
        for n in noises:
            n.copy_((n - n.mean()) / n.std())
            n.requires_grad_(True)
        w = self._start_w(w_avg, label).clone().requires_grad_(True)
        w_steps = opts.steps if opts.space == "w" else opts.steps // 2
        opt = torch.optim.Adam([{"params": [w] + noises, "lr": opts.lr}], betas=(0.9, 0.999))
        ws_plus = None
        try:
            for step in range(opts.steps):
                if step == w_steps and opts.space == "w+":  # switch to one w per layer, from the W solution
                    ws_plus = w.detach().repeat(1, G.num_ws, 1).requires_grad_(True)
                    opt = torch.optim.Adam([{"params": [ws_plus] + noises, "lr": 0.0}], betas=(0.9, 0.999))
                if ws_plus is None:
                    phase_t = step / w_steps
                    ramp = _lr_ramp(phase_t)
                    sigma = w_std * opts.initial_w_noise * max(0.0, 1.0 - phase_t / 0.75) ** 2
                else:  # W+ refines the W solution: a tenth of the step, no ramp-up, no exploration noise
                    ramp = 0.1 * _lr_ramp((step - w_steps) / max(1, opts.steps - w_steps), rampup=0)
                    sigma = 0.0
                opt.param_groups[0]["lr"] = opts.lr * ramp
                if ws_plus is None:
                    ws = (w + torch.randn_like(w) * sigma).expand(-1, G.num_ws, -1)
                else:
                    ws = ws_plus + torch.randn_like(ws_plus) * sigma
                planes, out = self._render(G, ws, label)
                fit = self._objective(out)
                loss = fit + opts.noise_weight * noise_penalty(noises)
                loss = loss + opts.density_weight * density_smoothness(G, planes)
                if ws_plus is not None:
                    spread = (ws_plus - ws_plus.mean(dim=1, keepdim=True)).square().mean()
                    loss = loss + opts.wplus_weight * spread / (w_std ** 2 / G.w_dim)
                if fit.item() < state.get("loss", math.inf):  # keep what was rendered, before the step moves it
                    state.update(loss=fit.item(), ws=ws.detach().clone(),
                                 noise={k: v.detach().clone() for k, v in self.noise_bufs.items()})
                    if self.on_best is not None:
                        self.on_best(state["ws"], label, G)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for n in noises:
                        n.sub_(n.mean()).div_(n.std())
                self._tick("w+" if ws_plus is not None else "w", step, fit.item())
        finally:
            for n in noises:
                n.requires_grad_(False)

    # ---- pivotal tuning ----------------------------------------------------------------------------
    @staticmethod
    def tuned_parameters(G, part: TunedPart = "all") -> list[nn.Parameter]:
        """What PTI fine-tunes: the weights of `part` (TUNED_PARTS), never the mapping, whose output is
        the pivot, nor the noise strengths."""
        prefixes = TUNED_PARTS[part]
        return [p for name, p in G.named_parameters()
                if name.startswith(prefixes) and not name.endswith("noise_strength")]

    def tune(self, ws_pivot: torch.Tensor, cam: OrbitLabel, label: torch.Tensor, tuned: nn.Module) -> None:
        """PTI: fine-tune `tuned` (a copy of G) in place around the pivot; it ends, also when stopped, with the
        weights that fit the target best (the image objective can rise again in the last steps)."""
        opts, G = self.opts, self.G
        params = self.tuned_parameters(tuned, opts.tune_params)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=opts.tune_lr)
        fixed_planes = None
        geometry = opts.tune_params != "sr"  # SR alone cannot move the density: no geometry terms
        if not any(p.startswith("backbone") for p in TUNED_PARTS[opts.tune_params]):  # fixed planes
            with torch.no_grad():
                fixed_planes = tuned.planes(ws_pivot)
        anchors = [(0.6, 0.0), (-0.6, 0.0), (0.0, -0.35)]  # yaw/pitch offsets (radians) of unseen views
        with torch.no_grad():
            planes = G.planes(ws_pivot)
            anchor_labels = [cam(dy, dp).detach() for dy, dp in anchors]
            anchor_out = [G.render_planes(planes, ws_pivot, c, superresolution=False) for c in anchor_labels]
        o = G.options
        depth_range = o.ray_end - o.ray_start if isinstance(o.ray_start, (int, float)) else o.avg_camera_radius
        w_p = ws_pivot[:, :1]
        mirror = self._mirror(label) if geometry else None
        best_fit, best = math.inf, None
        try:
            for step in range(opts.tune_steps):
                if opts.tune_rampdown > 0:
                    opt.param_groups[0]["lr"] = opts.tune_lr * _lr_ramp(step / opts.tune_steps, 0.0,
                                                                         opts.tune_rampdown)
                if fixed_planes is None:
                    planes, out = self._render(tuned, ws_pivot, label)
                else:
                    planes, out = fixed_planes, tuned.render_planes(fixed_planes, ws_pivot, label)
                fit = self._objective(out)
                if fit.item() < best_fit:  # the weights before this step's update
                    best_fit, best = fit.item(), [p.detach().clone() for p in params]
                loss = fit + opts.density_weight * density_smoothness(tuned, planes) if geometry else fit
                lazy = opts.tune_reg_every  # lazy regularisation: every k-th step at k times the weight
                if step % lazy == 0:
                    for c, ref in zip(anchor_labels if geometry else [], anchor_out):
                        a = tuned.render_planes(planes, ws_pivot, c, superresolution=False)
                        loss = loss + lazy * opts.anchor_weight / len(anchors) * (
                            (a["image_depth"] - ref["image_depth"]).abs().mean() / depth_range
                            + (a["image_opacity"] - ref["image_opacity"]).abs().mean())
                    # locality regulariser (PTI §3.3): a latent towards a random w must render as before
                    z = torch.randn(1, G.z_dim, generator=self.generator).to(self.device)
                    with torch.no_grad():
                        w_z = G.mapping(z, label)[:, :1]
                        d = w_z - w_p
                        w_r = (w_p + d * min(1.0, opts.locality_alpha / float(d.norm()))).expand(-1, G.num_ws, -1)
                        yaw = float(torch.rand((), generator=self.generator)) * 1.2 - 0.6
                        c_r = cam(yaw, 0.0).detach()
                        ref = G.synthesis(w_r, c_r)
                    got = tuned.synthesis(w_r, c_r)
                    local = F.mse_loss(got["image"], ref["image"]) + F.mse_loss(got["image_raw"], ref["image_raw"])
                    if self.perceptual is not None:
                        local = local + feature_distance(self.perceptual(got["image"], got["image_raw"]),
                                                         self.perceptual(ref["image"], ref["image_raw"])).sum()
                    loss = loss + lazy * opts.locality_weight * local
                if mirror is not None:  # the mirror prior: the flipped silhouette from the mirrored camera
                    opacity = tuned.render_planes(planes, ws_pivot, mirror[0], superresolution=False)["image_opacity"]
                    loss = loss + opts.symmetry_weight * (opacity - mirror[1]).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if self.on_best is not None:
                    self.on_best(ws_pivot, label, tuned)
                self._tick("tune", step, fit.item())
        finally:
            tuned.requires_grad_(False)
            with torch.no_grad():
                if best is not None and self._objective(self._render(tuned, ws_pivot, label)[1]).item() > best_fit:
                    for p, b in zip(params, best):
                        p.copy_(b)

    # ---- everything --------------------------------------------------------------------------------
    def run(self, label: torch.Tensor | None = None, fov_deg: float | None = None) -> InversionResult:
        """Invert with the camera label [25] given, or estimated when None (then held fixed while
        projecting)."""
        opts, G = self.opts, self.G
        estimate = label is None
        search = self.camera_search()
        line = int(search.line_steps > 0)
        ticks = 1 + (1 + len(search.spacings) * search.moves + line if search.fine_steps > 0 else 0)  # at most
        self.total = (ticks if estimate else 0) + opts.steps + opts.tune_steps
        state: dict = {}
        seconds: dict[str, float] = {}
        interrupted, tuned = False, None
        t0 = time.perf_counter()
        cam = None
        try:
            if estimate:
                cam = self.estimate_camera(fov_deg or G.options.avg_camera_fov)
                label = cam().detach()[0]
                self.total = self.done + opts.steps + opts.tune_steps  # the estimate's ticks as they were
                seconds["camera search"] = time.perf_counter() - t0
            else:
                cam = OrbitLabel.from_label(label, G.options.avg_camera_pivot).to(self.device)
            fixed_label = label.to(self.device).reshape(1, 25)
            t1 = time.perf_counter()
            self.project(fixed_label, state)
            seconds[opts.space] = time.perf_counter() - t1
        except (KeyboardInterrupt, Cancelled):
            interrupted = True
        if "ws" not in state:
            raise KeyboardInterrupt if interrupted else RuntimeError("projection ran no step")
        for name, value in state["noise"].items():
            self.noise_bufs[name].copy_(value)
        if opts.tune_steps > 0 and not interrupted:
            t1 = time.perf_counter()
            tuned = copy.deepcopy(G)
            try:
                self.tune(state["ws"], cam, fixed_label, tuned)
            except (KeyboardInterrupt, Cancelled):
                interrupted = True
            seconds["tune"] = time.perf_counter() - t1
        seconds["total"] = time.perf_counter() - t0
        return InversionResult(
            ws=state["ws"], camera=fixed_label.reshape(25).cpu(), yaw=cam.yaw.item(), pitch=cam.pitch.item(),
            fov_deg=cam.fov_deg, noise={k: v.cpu() for k, v in state["noise"].items()}, G=tuned,
            loss=state["loss"], history=self.history, interrupted=interrupted, seconds=seconds)
