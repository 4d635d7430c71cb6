"""Inversion quality benchmark on images the generator never made (held-out toys), or on its own samples.

Held-out mode (default, issue #28): each target is a new toy of training.heldout_toys, rendered by the
dataset's tracer at a known camera (the inversion's only input) and at three novel cameras. Per method
(w, w+, w+pti; camera given and/or estimated) it reports PSNR (dB, uint8 images) and a perceptual
distance (LPIPS-style on the checkpoint discriminator's features; the inversion also optimises those, so
PSNR is the unbiased figure) at the input view and at the novel views, the camera error (yaw, studio
pitch, elevation sign) and seconds. With the camera estimated the novel views are taken at the true
offsets from the estimate (what a user turning the result would see). w+ and w+pti come from one run
(the pivot and the tuned generator).

    python -m scripts.bench_invert --objects 12 --steps 300 --tune 100 --spaces w,w+pti --estimate w+pti

Own-sample mode (`--own-seeds 0-3`): the generator's seeds rendered at --yaw/--pitch as targets (the
protocol of the earlier BENCHMARKS.md sections).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """uint8 images -> PSNR in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) over RGB."""
    x = torch.from_numpy(a).permute(2, 0, 1)[:, None].double()
    y = torch.from_numpy(b).permute(2, 0, 1)[:, None].double()
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x ** 2
    var_y = F.conv2d(y * y, w) - mu_y ** 2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(s.mean())


def render(G, ws: torch.Tensor, label: torch.Tensor) -> np.ndarray:
    from core.imaging import to_uint8
    with torch.no_grad():
        return to_uint8(G.synthesis(ws, label.reshape(1, 25))["image"][0])


def result_views(inv, res, radius: float, offsets: list[float]) -> list[np.ndarray]:
    """The inversion result rendered at yaw offsets (radians) from its camera: with the tuned generator,
    else with the inverter's copy of G, which holds the result's noise maps."""
    from training.inversion import OrbitLabel
    G_out = res.G if res.G is not None else inv.G
    cam = OrbitLabel(res.yaw, res.pitch, res.fov_deg, radius, inv.G.options.avg_camera_pivot).to(inv.device)
    return [render(G_out, res.ws, cam(o).detach()) for o in offsets]


def main() -> None:
    import sys
    if "--own-seeds" not in sys.argv:
        from scripts.bench_heldout import main as heldout_main
        heldout_main()
        return
    from core.cameras import frontal_label
    from core.checkpoint import load_generator
    from core.images import seed_ws
    from core.latents import parse_seeds
    from training.inversion import InversionOptions, Inverter, OrbitLabel
    from training.perceptual import DiscriminatorFeatures, load_discriminator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="assets/default_model.ckpt")
    p.add_argument("--own-seeds", dest="seeds", default="0-3", help="own-sample mode: these seeds")
    p.add_argument("--yaw", type=float, default=25.0, help="target view yaw (degrees)")
    p.add_argument("--pitch", type=float, default=0.0)
    p.add_argument("--novel", default="-45,-25", help="novel-view yaw offsets from the target (degrees); "
                   "-45,-25 from +25 are yaw -20 and 0")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tune", type=int, default=100)
    p.add_argument("--starts", type=int, default=0, help="random starting latents besides the mean w")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per seed and setting, with random seeds 0..N-1 (the optimiser's draws)")
    p.add_argument("--spaces", default="w,w+,w+pti", help="which runs (w, w+, w+pti)")
    p.add_argument("--estimate", default="", help="runs to repeat with the camera estimated (e.g. w)")
    args = p.parse_args()
    torch.manual_seed(0)
    G = load_generator(args.network, "cpu")
    D = load_discriminator(args.network)
    perceptual = DiscriminatorFeatures(D) if D is not None else None
    print(f"network {args.network}; loss: multi-scale pixel MSE"
          + (" + discriminator features" if perceptual else " only (the file has no discriminator)"))
    offsets = [math.radians(float(v)) for v in args.novel.split(",")]
    yaw, pitch = math.radians(args.yaw), math.radians(args.pitch)
    runs = [s for s in args.spaces.split(",") if s]
    estimated = [s for s in args.estimate.split(",") if s]
    rows: dict[tuple[str, bool], list[tuple[float, float, float, float]]] = {}
    for seed in parse_seeds(args.seeds):
        ws_true = seed_ws(G, seed)
        label = frontal_label(G.options, None, yaw=yaw, pitch=pitch)
        target = G.synthesis(ws_true, label)["image"].detach().clamp(-1, 1)
        truth_cam = OrbitLabel.from_label(label[0], G.options.avg_camera_pivot)
        truths = [render(G, ws_true, truth_cam(o).detach()) for o in offsets]
        for estimate, names in ((False, runs), (True, estimated)):
            for run, rep in ((run, rep) for run in names for rep in range(args.repeats)):
                space = "w" if run == "w" else "w+"
                opts = InversionOptions(steps=args.steps, space=space, tune_steps=args.tune if run == "w+pti" else 0,
                                        starts=args.starts, seed=rep)
                inv = Inverter(G, target, opts, perceptual)
                torch.manual_seed(rep)  # as `invert --seed`: a run's draws do not depend on the runs before it
                t0 = time.perf_counter()
                res = inv.run(None if estimate else label[0])
                seconds = time.perf_counter() - t0
                *views, seen = result_views(inv, res, truth_cam.radius, offsets + [0.0])
                scores = [(psnr(v, t), ssim(v, t)) for v, t in zip(views, truths)]
                seen = psnr(seen, render(G, ws_true, label))
                rows.setdefault((run, estimate), []).append(
                    (np.mean([s[0] for s in scores]), np.mean([s[1] for s in scores]), seconds,
                     math.degrees(res.yaw - yaw), math.degrees(res.pitch - pitch), rep))
                print(f"seed {seed} {run:6s} rep {rep} camera {'estimated' if estimate else 'given':9s} "
                      f"novel PSNR {rows[(run, estimate)][-1][0]:.2f} dB SSIM {rows[(run, estimate)][-1][1]:.3f} "
                      f"(input view {seen:.2f} dB) {seconds:.0f} s  yaw err {math.degrees(res.yaw - yaw):+.1f} "
                      f"pitch err {math.degrees(res.pitch - pitch):+.1f}", flush=True)
        with torch.no_grad():
            w_avg = G.mapping(torch.randn(2000, G.z_dim), label.expand(2000, -1))[:, :1].mean(0, keepdim=True)
        base = [render(G, w_avg.expand(-1, G.num_ws, -1), truth_cam(o).detach()) for o in offsets]
        rows.setdefault(("mean w", False), []).append(
            (np.mean([psnr(b, t) for b, t in zip(base, truths)]), np.mean([ssim(b, t) for b, t in zip(base, truths)]),
             0.0, 0.0, 0.0, 0))
    print("\n| run | camera | novel-view PSNR (dB) | range over repeats | SSIM | wall time (s) "
          "| yaw / pitch error (deg) |")
    print("|---|---|---|---|---|---|---|")
    for (run, estimate), r in rows.items():
        a = np.array(r)
        per_rep = [a[a[:, 5] == k, 0].mean() for k in np.unique(a[:, 5])]
        spread = f"{min(per_rep):.2f}–{max(per_rep):.2f}" if len(per_rep) > 1 else "–"
        err = f"{np.abs(a[:, 3]).mean():.1f} / {np.abs(a[:, 4]).mean():.1f}" if estimate else "–"
        print(f"| {run} | {'estimated' if estimate else 'given'} | {a[:, 0].mean():.2f} | {spread} | "
              f"{a[:, 1].mean():.3f} | {a[:, 2].mean():.0f} | {err} |")


if __name__ == "__main__":
    main()
