"""Held-out mode of scripts/bench_invert.py: invert toys the generator never made (see that docstring)."""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from scripts.bench_invert import psnr, render
from training.camera_estimate import pitch_to_elevation


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1


def _perceptual(features, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS-style distance of two uint8 images on the discriminator's features (0 = same)."""
    from training.perceptual import feature_distance
    if features is None:
        return float("nan")
    x, y = _tensor(a), _tensor(b)
    with torch.no_grad():
        fx = features(x, F.interpolate(x, size=(32, 32), mode="area"))
        fy = features(y, F.interpolate(y, size=(32, 32), mode="area"))
        return float(feature_distance(fx, fy))


def _studio(label: torch.Tensor) -> tuple[float, float]:
    """A label's studio yaw and pitch (radians)."""
    from training.inversion import OrbitLabel
    cam = OrbitLabel.from_label(label, (0.0, 0.0, 0.0))
    return cam.yaw.item(), cam.pitch.item()


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def _score(ctx: tuple, G_out, ws: torch.Tensor, yaw: float, pitch: float, fov: float, seconds: float,
           estimated: bool) -> dict:
    """A result rendered at its camera and at the novel views' offsets from it, against the truth;
    ctx = (G, perceptual features, target, novel-view offsets, true studio yaw/pitch)."""
    from training.inversion import OrbitLabel
    G, features, t, offsets, truth = ctx
    cam = OrbitLabel(yaw, pitch, fov, G.options.avg_camera_radius, G.options.avg_camera_pivot)
    seen = render(G_out, ws, cam().detach())
    views = [render(G_out, ws, cam(dy, dp).detach()) for dy, dp in offsets]
    row = dict(name=t.name, in_psnr=psnr(seen, t.input.image), in_lp=_perceptual(features, seen, t.input.image),
               nv_psnr=float(np.mean([psnr(v, n.image) for v, n in zip(views, t.novel)])),
               nv_lp=float(np.mean([_perceptual(features, v, n.image) for v, n in zip(views, t.novel)])),
               seconds=seconds)
    if estimated:
        row.update(yaw_err=_wrap(math.degrees(yaw - truth[0])), pitch_err=math.degrees(pitch - truth[1]),
                   elev=pitch_to_elevation(pitch), elev_true=t.input.elevation)
    return row


def main() -> None:
    from core.checkpoint import load_generator
    from training.heldout_toys import heldout_toys
    from training.inversion import InversionOptions, Inverter, OrbitLabel, mean_w
    from training.perceptual import DiscriminatorFeatures, load_discriminator

    p = argparse.ArgumentParser(description="Inversion of held-out toys (scripts/bench_invert.py)")
    p.add_argument("--network", default="assets/default_model.ckpt")
    p.add_argument("--objects", type=int, default=12)
    p.add_argument("--first", type=int, default=0, help="first held-out object")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tune", type=int, default=100)
    p.add_argument("--spaces", default="w,w+pti", help="runs with the camera given: w, w+ (w+pti reports both)")
    p.add_argument("--estimate", default="", help="runs with the camera estimated; 'camera' = the estimate only")
    p.add_argument("--symmetry", type=float, default=InversionOptions.symmetry_weight, help="the mirror prior's weight")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    G = load_generator(args.network, "cpu")
    D = load_discriminator(args.network)
    features = DiscriminatorFeatures(D) if D is not None else None
    targets = heldout_toys(args.objects, G.img_resolution, args.first)
    print(f"network {args.network}; {len(targets)} held-out toys; steps {args.steps}, tune {args.tune}", flush=True)
    rows: dict[tuple[str, str], list[dict]] = {}

    def add(method: str, how: str, row: dict) -> None:
        rows.setdefault((method, how), []).append(row)
        cam = (f" yaw err {row['yaw_err']:+.1f} pitch err {row['pitch_err']:+.1f} elev {row['elev']:+.1f} "
               f"(true {row['elev_true']:+.1f})") if "yaw_err" in row else ""
        print(f"{row['name']:10s} {method:7s} {how:9s} input {row['in_psnr']:.2f} dB / {row['in_lp']:.3f}  "
              f"novel {row['nv_psnr']:.2f} dB / {row['nv_lp']:.3f}  {row['seconds']:.0f} s{cam}", flush=True)

    for t in targets:
        true_yaw, true_pitch = _studio(t.input.label)
        offsets = [(a - true_yaw, b - true_pitch) for a, b in (_studio(v.label) for v in t.novel)]
        w_avg = mean_w(G, t.input.label[None], 2000, torch.Generator().manual_seed(0))[0].expand(-1, G.num_ws, -1)

        ctx = (G, features, t, offsets, (true_yaw, true_pitch))
        fov = OrbitLabel.from_label(t.input.label, (0, 0, 0)).fov_deg
        add("mean w", "given", _score(ctx, G, w_avg, true_yaw, true_pitch, fov, 0.0, False))
        for how, names in (("given", args.spaces), ("estimated", args.estimate)):
            for method in [m for m in names.split(",") if m]:
                tune = args.tune if method == "w+pti" else 0
                opts = InversionOptions(steps=args.steps, space="w" if method == "w" else "w+", tune_steps=tune,
                                        symmetry_weight=args.symmetry, seed=args.seed)
                inv = Inverter(G, t.input.tensor(), opts, features)
                torch.manual_seed(args.seed)
                t0 = time.perf_counter()
                if method == "camera":
                    cam, secs = inv.estimate_camera(fov), time.perf_counter() - t0
                    row = _score(ctx, G, w_avg, cam.yaw.item(), cam.pitch.item(), fov, secs, True)
                    add("camera", how, row)
                    continue
                res = inv.run(None if how == "estimated" else t.input.label)
                secs = time.perf_counter() - t0
                est = how == "estimated"
                pivot_secs = secs - res.seconds.get("tune", 0.0)
                add("w" if method == "w" else "w+", how,
                    _score(ctx, inv.G, res.ws, res.yaw, res.pitch, res.fov_deg, pivot_secs, est))
                if res.G is not None:
                    add("w+pti", how, _score(ctx, res.G, res.ws, res.yaw, res.pitch, res.fov_deg, secs, est))

    print("\n| run | camera | input PSNR (dB) | input perceptual | novel PSNR (dB) | novel perceptual | seconds "
          "| yaw / pitch error (deg, mean abs) | within 5° | elevation sign right |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (method, how), r in rows.items():
        m = {k: np.mean([x[k] for x in r]) for k in ("in_psnr", "in_lp", "nv_psnr", "nv_lp", "seconds")}
        cam = "– | – | –"
        if "yaw_err" in r[0]:
            within = sum(abs(x["yaw_err"]) <= 5 and abs(x["pitch_err"]) <= 5 for x in r)
            sign = sum((x["elev"] >= 0) == (x["elev_true"] >= 0) for x in r)
            cam = (f"{np.mean([abs(x['yaw_err']) for x in r]):.1f} / {np.mean([abs(x['pitch_err']) for x in r]):.1f}"
                   f" | {within}/{len(r)} | {sign}/{len(r)}")
        print(f"| {method} | {how} | {m['in_psnr']:.2f} | {m['in_lp']:.3f} | {m['nv_psnr']:.2f} | {m['nv_lp']:.3f} "
              f"| {m['seconds']:.0f} | {cam} |")
