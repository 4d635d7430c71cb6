"""Contact sheet of a model: one column per seed, one row per (view, output) — raw neural rendering,
super-resolved image and depth — so shape diversity, raw/SR agreement and depth quality show at a glance.

    python -m scripts.model_sheet assets/default_model.ckpt --seeds 0-7 --out docs/default-model.png
    python -m scripts.model_sheet assets/default_model.ckpt --seeds 0-11 --yaws 0,90,180,270 --pitch -20 --out all.png
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch


def main() -> None:
    from core.cameras import frontal_label
    from core.checkpoint import load_generator
    from core.images import render_modes, seed_ws
    from core.imaging import contact_sheet, resize, save_png
    from core.latents import parse_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("network")
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--yaws", default="35", help="comma-separated yaw offsets in degrees (default 35)")
    p.add_argument("--pitch", type=float, default=-15.0, help="pitch offset in degrees (> 0 = lower; default -15)")
    p.add_argument("--psi", type=float, default=0.7)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    G = load_generator(args.network, "cpu")
    size = G.img_resolution
    modes = ("image_raw", "image", "image_depth")
    names = {"image_raw": "raw", "image": "SR", "image_depth": "depth"}
    seeds = parse_seeds(args.seeds)
    rows: list[list[np.ndarray]] = []
    labels: list[list[str]] = []
    ws = torch.cat([seed_ws(G, s, psi=args.psi) for s in seeds])
    with torch.no_grad():
        planes = G.planes(ws)
    for yaw in (float(v) for v in args.yaws.split(",")):
        label = frontal_label(G.options, yaw=math.radians(yaw), pitch=math.radians(args.pitch))
        frames = render_modes(G, planes, ws, label, modes)
        for m in modes:
            rows.append([resize(f[m], size) for f in frames])
            labels.append([f"seed {s} {names[m]} yaw {yaw:+.0f}" for s in seeds])
    sheet = contact_sheet([f for r in rows for f in r], cols=len(seeds), labels=[t for r in labels for t in r])
    print(f"wrote {save_png(args.out, sheet)}")


if __name__ == "__main__":
    main()
