"""How far a model's super-resolved image strays from its raw neural rendering (the SR rim and halo).

For seeds 0-11 at yaw -35/0/+35 it reports the share of SR pixels outside [-1.05, 1.05] (what the display
clamps away: the dark rim is clamped undershoot) and the mean |area-downsampled SR - raw| on the [-1, 1]
scale. Lower is better for both; a model whose SR only sharpens the raw image has both near 0.

    python -m scripts.sr_agreement assets/default_model.ckpt runs/toys/network-snapshot-000088000.ckpt
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F


def sr_agreement(G, seeds: range, yaws: tuple[float, ...]) -> tuple[float, float]:
    """(share of SR pixels outside ±1.05, mean |area-down(SR clamped) - raw clamped|) over seeds × yaws."""
    from core.cameras import frontal_label
    from core.images import seed_ws
    outside, diff, n = 0.0, 0.0, 0
    with torch.no_grad():
        for seed in seeds:
            ws = seed_ws(G, seed)
            for yaw in yaws:
                out = G.synthesis(ws, frontal_label(G.options, None, yaw=math.radians(yaw), pitch=0.0))
                image, raw = out["image"], out["image_raw"].clamp(-1, 1)
                outside += float((image.abs() > 1.05).float().mean())
                down = F.interpolate(image.clamp(-1, 1), size=raw.shape[-2:], mode="area")
                diff += float((down - raw).abs().mean())
                n += 1
    return outside / n, diff / n


def main() -> None:
    from core.checkpoint import load_generator
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("networks", nargs="+", help="checkpoints or network pickles")
    p.add_argument("--seeds", type=int, default=12, help="seeds 0..N-1 (default 12)")
    args = p.parse_args()
    for path in args.networks:
        outside, diff = sr_agreement(load_generator(path, "cpu"), range(args.seeds), (-35.0, 0.0, 35.0))
        print(f"{path}: SR outside ±1.05 {100 * outside:.1f}% of pixels, |SR↓ - raw| {diff:.4f}", flush=True)


if __name__ == "__main__":
    main()
