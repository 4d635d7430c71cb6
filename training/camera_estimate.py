"""Camera estimate for inversion: which view of the model's object space explains one image.

Views are scored by short fits of w with the camera held fixed (a fit with the camera free lets w and
the view trade off and stalls far from the truth), many views at once in one batch, on the raw
neural rendering only (the super-resolution adds detail, not pose): the raw image against the area-
downsampled target, plus a silhouette cue, the model's opacity against the target's foreground mask
(pixels away from the plain background). The search covers the model's pose prior, the training
camera distribution (yaw all around, elevation in `elevations`' range), coarse to fine: a grid of
views rendered from a bank of latents at a low resolution without fitting, then a pattern search
around the best few at the model's resolution (refine_views), and last the elevation alone along a line
through the best view, scored by longer fits (elevation_line): the 25-step fits that steer the search
are too short to read the elevation near the horizon, 100-step fits read it better (held-out toys,
BENCHMARKS.md). run_camera_estimate runs it on the CPU in a child process (estimate_camera_in_child) that has
every core and OpenMP's default wait policy, whatever the caller's process settings.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.progress import Cancelled, Progress
from training.orbit_label import OrbitLabel


@dataclass(frozen=True)
class CameraSearch:
    yaws: int = 24
    """Coarse grid: this many yaws, evenly all around."""
    elevations: tuple[float, ...] = (-4.0, 10.0, 24.0, 38.0)
    """Coarse grid elevations (degrees above the horizon): the default model's training range, -8.6..43."""
    elevation_range: tuple[float, float] = (-9.0, 44.0)
    """The fine search stays inside this range (the pose prior: the model never saw views outside)."""
    latents: int = 16
    """Random latents (besides the mean w) rendered at every grid view: the object kinds to match."""
    psi: float = 0.7
    coarse_resolution: int = 16
    candidates: int = 8
    """Best coarse views scored by a fixed-camera fit before the pattern search (the grid's scores, with no
    fit, often rank the true view a few places down)."""
    keep: int = 2
    """Views whose neighbours the pattern search scores at each round."""
    spacings: tuple[float, ...] = (8.0, 4.0, 2.0)
    """Pattern search spacings (degrees, yaw and elevation)."""
    moves: int = 1
    """Rounds per spacing at most: a round scores the neighbours of the best views so far; the next
    spacing starts when they stay the best."""
    fine_steps: int = 25
    """Steps of each fixed-camera W fit that scores a view (0: the best grid view as is)."""
    line_offsets: tuple[float, ...] = (-12.0, -8.0, -4.0, 4.0, 8.0, 12.0)
    """Elevations (degrees from the best view's) that the elevation line scores besides the best view."""
    line_steps: int = 100
    """Steps of the elevation line's fits (0: no elevation line)."""
    line_yaws: int = 2
    """The elevation line runs at the best view's yaw and at the best views of up to this many - 1 other
    yaws that the search ranks alike (line_yaw_gap, line_yaw_margin): the short fits rank two yaws of a round
    object alike (which one wins changes with the thread count), their elevations can differ, and the longer
    fits decide between them."""
    line_yaw_gap: float = 8.0
    """Degrees of yaw between the views the line runs at."""
    line_yaw_margin: float = 0.05
    """Another yaw's line runs only when its best view scores within this fraction of the best view's (1% for
    lamp03; 3-5% for lamp09 and tree04, 5-38% for the other 9 held-out toys): only such images pay for it."""
    lr: float = 0.02
    silhouette_weight: float = 1.0


def elevation_to_pitch(elevation_deg: float) -> float:
    """Elevation above the horizon (degrees) -> the studio's pitch offset (radians, > 0 lower)."""
    return -math.pi / 2 * math.sin(math.radians(elevation_deg))


def pitch_to_elevation(pitch: float) -> float:
    """The studio's pitch offset (radians) -> elevation above the horizon (degrees)."""
    return math.degrees(math.asin(max(-1.0, min(1.0, -2 * pitch / math.pi))))


def foreground_mask(image: torch.Tensor, white_back: bool = True, threshold: float = 0.08) -> torch.Tensor:
    """[N,3,R,R] in [-1,1] -> [N,1,R,R] soft mask of pixels away from the plain background colour."""
    back = 1.0 if white_back else -1.0
    dist = (image - back).abs().amax(dim=1, keepdim=True) / 2
    return (dist / threshold).clamp(0, 1)


def fit_views(G, target: torch.Tensor, labels: torch.Tensor, w_start: torch.Tensor, steps: int, lr: float,
              resolution: int, silhouette_weight: float = 1.0) -> torch.Tensor:
    """Short W fits of the raw image at fixed cameras labels [B,25], all at once, from
    w_start [1 or B,1,w_dim] -> final losses [B]."""
    raw = F.interpolate(target, size=(resolution, resolution), mode="area")
    mask = foreground_mask(raw, bool(G.rendering_kwargs.get("white_back", True)))
    b = labels.shape[0]
    w = w_start.reshape(-1, 1, w_start.shape[-1]).expand(b, 1, -1).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))

    def losses() -> torch.Tensor:
        ws = w.expand(-1, G.num_ws, -1)
        out = G.render_planes(G.planes(ws), ws, labels, neural_rendering_resolution=resolution,
                              superresolution=False)
        fit = (out["image_raw"] - raw).square().mean(dim=(1, 2, 3))
        return fit + silhouette_weight * (out["image_opacity"] - mask).square().mean(dim=(1, 2, 3))

    for _ in range(steps):
        loss = losses()
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # the views' ws are independent: one backward serves them all
        opt.step()
    with torch.no_grad():
        return losses()


def _bank_scores(G, target: torch.Tensor, ws: torch.Tensor, labels: torch.Tensor, resolution: int,
                 silhouette_weight: float) -> torch.Tensor:
    """Every latent ws [N,num_ws,w_dim] rendered (raw) at every camera labels [V,25] -> losses [N,V]."""
    raw = F.interpolate(target, size=(resolution, resolution), mode="area")
    mask = foreground_mask(raw, bool(G.rendering_kwargs.get("white_back", True)))
    v = labels.shape[0]
    rows = []
    with torch.no_grad():
        for i in range(ws.shape[0]):
            w = ws[i:i + 1]
            planes = G.planes(w)
            out = G.render_planes(planes.expand(v, *planes.shape[1:]), w.expand(v, -1, -1), labels,
                                  neural_rendering_resolution=resolution, superresolution=False)
            rows.append((out["image_raw"] - raw).square().mean(dim=(1, 2, 3))
                        + silhouette_weight * (out["image_opacity"] - mask).square().mean(dim=(1, 2, 3)))
    return torch.stack(rows)


def _labels(G, views: list[tuple[float, float]], fov_deg: float, device) -> torch.Tensor:
    """(yaw radians, elevation degrees) views -> camera labels [V,25] on the model's orbit."""
    o = G.options
    return torch.cat([OrbitLabel(y, elevation_to_pitch(e), fov_deg, o.avg_camera_radius, o.avg_camera_pivot)().detach()
                      for y, e in views]).to(device)


def _bank(G, w_avg: torch.Tensor, fov_deg: float, search: CameraSearch, seed: int, device) -> torch.Tensor:
    """The mean w and `search.latents` truncated random latents (kinds of object), [1 + N,1,w_dim]."""
    z = torch.randn(search.latents, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        w = G.mapping(z, _labels(G, [(0.0, 0.0)], fov_deg, device).expand(search.latents, -1))[:, :1]
    return torch.cat([w_avg.reshape(1, 1, -1), w_avg + search.psi * (w - w_avg)])


def refine_views(G, target: torch.Tensor, w_avg: torch.Tensor, fov_deg: float, views: list[tuple[float, float]],
                 search: CameraSearch = CameraSearch(), seed: int = 0,
                 tick: Callable[[str, int, float], None] | None = None) -> tuple[float, float]:
    """The best of `views` (yaw radians, elevation degrees) and of a pattern search around it, each view
    scored by a short fixed-camera W fit from the bank latent that matches it best, the elevation last set by
    elevation_line at the best view's yaw and at the best other yaws (line_yaws) -> (yaw, elevation)."""
    lo, hi = search.elevation_range
    res = G.neural_rendering_resolution
    bank = _bank(G, w_avg, fov_deg, search, seed, target.device)
    best_latent = _bank_scores(G, target, bank.expand(-1, G.num_ws, -1), _labels(G, views, fov_deg, target.device),
                               res, search.silhouette_weight).argmin(dim=0)
    scores: dict[tuple[float, float], float] = {}
    origin: dict[tuple[float, float], torch.Tensor] = {}

    def score(views: list[tuple[float, float]], latents: list[torch.Tensor]) -> None:
        got = fit_views(G, target, _labels(G, views, fov_deg, target.device), torch.stack(latents),
                        search.fine_steps, search.lr, res, search.silhouette_weight)
        scores.update(zip(views, got.tolist()))
        origin.update(zip(views, latents))
        if tick is not None:
            tick("camera views", len(views), float(got.min()))

    score(views, [bank[i] for i in best_latent.tolist()])
    for spacing in search.spacings:
        s = math.radians(spacing)
        for _ in range(search.moves):
            centres = sorted(scores, key=scores.__getitem__)[:search.keep]
            new = {(y + dy, min(hi, max(lo, e + de))): origin[(y, e)]
                   for y, e in centres for dy, de in ((s, 0), (-s, 0), (0, spacing), (0, -spacing))}
            new = {k: v for k, v in new.items() if k not in scores}
            if new:
                score(list(new), list(new.values()))
            if sorted(scores, key=scores.__getitem__)[:search.keep] == centres:
                break  # the centres stayed: the next, finer spacing
    ranked = sorted(scores, key=scores.__getitem__)
    lines, gap = ranked[:1], math.radians(search.line_yaw_gap)
    for view in ranked[1:]:
        if len(lines) < search.line_yaws and scores[view] <= scores[ranked[0]] * (1 + search.line_yaw_margin) and all(
                abs((view[0] - y + math.pi) % (2 * math.pi) - math.pi) >= gap for y, _ in lines):
            lines.append(view)
    return elevation_line(G, target, fov_deg, lines, [origin[v] for v in lines], search, tick)


def elevation_line(G, target: torch.Tensor, fov_deg: float, views: list[tuple[float, float]],
                   latents: list[torch.Tensor], search: CameraSearch = CameraSearch(),
                   tick: Callable[[str, int, float], None] | None = None) -> tuple[float, float]:
    """The best of `views` (yaw radians, elevation degrees; the first when there is no line) and of the views
    at their yaws and elevations `search.line_offsets` away (inside the pose prior), each scored by a
    `line_steps`-step fixed-camera W fit from its view's latent [1,w_dim], all in one batch."""
    if search.line_steps <= 0 or not search.line_offsets:
        return views[0]
    lo, hi = search.elevation_range
    line, starts = [], []
    for (yaw, elev), latent in zip(views, latents):
        elevations = sorted({elev} | {min(hi, max(lo, elev + d)) for d in search.line_offsets})
        line += [(yaw, e) for e in elevations]
        starts += [latent] * len(elevations)
    got = fit_views(G, target, _labels(G, line, fov_deg, target.device), torch.stack(starts), search.line_steps,
                    search.lr, G.neural_rendering_resolution, search.silhouette_weight)
    if tick is not None:
        tick("camera elevation", len(line), float(got.min()))
    return line[int(got.argmin())]


def estimate_camera(G, target: torch.Tensor, w_avg: torch.Tensor, fov_deg: float,
                    search: CameraSearch = CameraSearch(), seed: int = 0,
                    tick: Callable[[str, int, float], None] | None = None) -> tuple[float, float]:
    """The (yaw, pitch) in the studio's radians whose view best explains `target` [1,3,R,R]: the best
    `candidates` views of the coarse grid, then refine_views (fine_steps > 0)."""
    bank = _bank(G, w_avg, fov_deg, search, seed, target.device)
    grid = [(math.radians(360.0 * k / search.yaws), e) for k in range(search.yaws) for e in search.elevations]
    per_view = _bank_scores(G, target, bank.expand(-1, G.num_ws, -1), _labels(G, grid, fov_deg, target.device),
                            search.coarse_resolution, search.silhouette_weight).min(dim=0).values
    if tick is not None:
        tick("camera grid", len(grid), float(per_view.min()))
    views = [grid[i] for i in per_view.argsort().tolist()[:search.candidates]]
    yaw, elev = views[0] if search.fine_steps <= 0 else refine_views(G, target, w_avg, fov_deg, views, search,
                                                                      seed, tick)
    return (yaw + math.pi) % (2 * math.pi) - math.pi, elevation_to_pitch(elev)


def run_camera_estimate(G, target: torch.Tensor, w_avg: torch.Tensor, fov_deg: float,
                        search: CameraSearch = CameraSearch(), seed: int = 0,
                        tick: Callable[[str, int, float], None] | None = None,
                        progress: Progress | None = None) -> tuple[float, float]:
    """estimate_camera where it runs best: G on the CPU in a child process with every core
    (estimate_camera_in_child), on a GPU here; either way Cancel on `progress` stops it within one rendering
    pass (raises core.progress.Cancelled)."""
    if next(G.parameters()).device.type == "cpu":
        return estimate_camera_in_child(G, target, w_avg, fov_deg, search, seed, tick, progress)

    def stop_if_cancelled(*_) -> None:   # every rendering pass decodes
        if progress is not None and progress.cancelled():
            raise Cancelled("camera estimate stopped")

    hook = G.decoder.register_forward_pre_hook(stop_if_cancelled)
    try:
        return estimate_camera(G, target, w_avg, fov_deg, search, seed, tick)
    finally:
        hook.remove()


def estimate_camera_in_child(G, target: torch.Tensor, w_avg: torch.Tensor, fov_deg: float,
                             search: CameraSearch = CameraSearch(), seed: int = 0,
                             tick: Callable[[str, int, float], None] | None = None,
                             progress: Progress | None = None, threads: int | None = None) -> tuple[float, float]:
    """estimate_camera in a child process (core.compute_process; G on the CPU): the same views, ticks and
    answer with every core (`threads`: None = torch's default) and OpenMP's default wait policy: on the
    2-core machine 59 s, not 76 s under PASSIVE, and not the single thread the studio leaves to its jobs.
    Cancel on `progress` (or Ctrl+C / SIGTERM here) kills the child."""
    from core.compute_process import run_in_child
    from core.generator_build import constructor_kwargs
    args = {"kwargs": constructor_kwargs(G), "weights": G.state_dict(),
            "neural_rendering_resolution": int(G.neural_rendering_resolution), "target": target.detach().cpu(),
            "w_avg": w_avg.detach().cpu(), "fov": float(fov_deg), "search": dataclasses.asdict(search), "seed": seed}
    return tuple(run_in_child("camera estimate", "training.camera_estimate:_estimate_child", args, progress,
                              None if tick is None else lambda t: tick(t["phase"], t["views"], t["loss"]), threads))


def _estimate_child(args: dict, tick) -> list[float]:
    """The child's side of estimate_camera_in_child: the generator rebuilt from its constructor kwargs and
    weights -> [yaw, pitch]."""
    from core.generator_build import build_generator
    G = build_generator(args["kwargs"], args["weights"], None, args["neural_rendering_resolution"],
                        source="camera estimate")
    return list(estimate_camera(G, args["target"], args["w_avg"], args["fov"], CameraSearch(**args["search"]),
                                args["seed"], lambda phase, views, loss: tick(phase=phase, views=views, loss=loss)))
