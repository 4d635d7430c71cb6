"""How far a model's super-resolved image strays from its raw neural rendering (the SR rim and halo).

For seeds 0-11 at yaw -35/0/+35 it reports the share of SR pixels outside [-1.05, 1.05] (what the display
clamps away), the share that ring: more than 0.1 outside the range of the raw pixels around them
(training.loss.raw_envelope; a dark rim inside [-1, 1] counts here), and the mean |area-downsampled SR - raw|
on the [-1, 1] scale. Lower is better for all three; a model whose SR only sharpens the raw image has all
near 0. `--data DIR` also reports the last two for real images against their antialiased 32² version (what D
sees as their raw image): the level a model's SR can reach.

    python -m scripts.sr_agreement assets/default_model.ckpt runs/toys_sr/network-snapshot-000024000.ckpt \
        --data data/toys128
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F


def _ringing_and_diff(image: torch.Tensor, raw: torch.Tensor) -> tuple[float, float]:
    from training.loss import raw_envelope
    lo, hi = raw_envelope(raw, image.shape[-2:])
    ringing = float(((lo - image > 0.1) | (image - hi > 0.1)).float().mean())
    return ringing, float((F.interpolate(image, size=raw.shape[-2:], mode="area") - raw).abs().mean())


def sr_agreement(G, seeds: range, yaws: tuple[float, ...]) -> tuple[float, float, float]:
    """(share of SR pixels outside ±1.05, share ringing by > 0.1, mean |area-down(SR clamped) - raw clamped|)
    over seeds × yaws."""
    from core.cameras import frontal_label
    from core.images import seed_ws
    outside, ringing, diff, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for seed in seeds:
            ws = seed_ws(G, seed)
            for yaw in yaws:
                out = G.synthesis(ws, frontal_label(G.options, None, yaw=math.radians(yaw), pitch=0.0))
                image, raw = out["image"], out["image_raw"].clamp(-1, 1)
                outside += float((image.abs() > 1.05).float().mean())
                r, d = _ringing_and_diff(image.clamp(-1, 1), raw)
                ringing, diff, n = ringing + r, diff + d, n + 1
    return outside / n, ringing / n, diff / n


def real_agreement(data: str, count: int = 100) -> tuple[float, float]:
    """(share ringing by > 0.1, mean |area-down - raw|) of `count` real images spread over a dataset."""
    from training.dataset import open_dataset
    from training.discriminator import filtered_resize
    ds = open_dataset(data)
    idx = torch.linspace(0, len(ds) - 1, min(count, len(ds))).long().tolist()
    real = torch.stack([torch.from_numpy(ds.image(i)).float() for i in idx]) / 127.5 - 1
    return _ringing_and_diff(real, filtered_resize(real, 32))


def main() -> None:
    from core.checkpoint import load_generator
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("networks", nargs="+", help="checkpoints or network pickles")
    p.add_argument("--seeds", type=int, default=12, help="seeds 0..N-1 (default 12)")
    p.add_argument("--data", help="a dataset: also report its real images")
    args = p.parse_args()
    if args.data:
        ringing, diff = real_agreement(args.data)
        print(f"{args.data} (100 real images): ringing {100 * ringing:.1f}%, |↓ - raw| {diff:.4f}", flush=True)
    for path in args.networks:
        outside, ringing, diff = sr_agreement(load_generator(path, "cpu"), range(args.seeds), (-35.0, 0.0, 35.0))
        print(f"{path}: SR outside ±1.05 {100 * outside:.1f}% of pixels, ringing {100 * ringing:.1f}%, "
              f"|SR↓ - raw| {diff:.4f}", flush=True)


if __name__ == "__main__":
    main()
