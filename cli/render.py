"""`main.py render`: PNG images (image / raw / depth) per seed and camera, plus contact sheets."""
from __future__ import annotations

import argparse

HELP = "Render PNGs per seed and camera (image, image_raw, image_depth) and a contact-sheet grid."
EXAMPLES = """examples:
  python main.py render ffhq512-128.pkl --seeds 0-7 --out images
  python main.py render ffhq512-128.pkl --seeds 0-3 --views 5 --yaw-range 30 --mode image,image_depth --out sweep
  python main.py render ffhq512-128.pkl --seeds 3 --yaw 20 --pitch -10 --fov 15 --psi 1 --out one

Angles are in DEGREES, offsets from the frontal camera: --yaw > 0 moves the camera towards +x, --pitch > 0
moves it down (the original convention). Conditioning is the frontal camera, as in gen_samples.
Files: DIR/seed0003_yaw+20_pitch-10_image.png and DIR/grid_image.png (rows = seeds, columns = views)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_depth_mask_argument, add_source_arguments, float_in, int_in
    add_source_arguments(p, "0-7", "DIR")
    p.add_argument("--yaw", type=float_in(-360, 360), default=0.0, help="camera yaw offset in degrees (default 0)")
    p.add_argument("--pitch", type=float_in(-90, 90), default=0.0, help="camera pitch offset in degrees, > 0 = lower")
    p.add_argument("--views", type=int_in(1, 360), default=1,
                   help="N cameras: a yaw sweep of --yaw +- --yaw-range (default 1 = just --yaw)")
    p.add_argument("--yaw-range", type=float_in(0, 180), default=23.0, help="half-width of the sweep in degrees (23)")
    p.add_argument("--mode", default="image",
                   help="comma-separated: image (super-resolved), image_raw, image_depth (default image)")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                   help="also write one contact sheet per mode (default on)")
    p.add_argument("--depth-colormap", action="store_true", help="colour depth images (default grey)")
    add_depth_mask_argument(p)


def run(args: argparse.Namespace) -> int:
    import math

    from cli.common import open_generator, read_source, writable_dir
    from core.images import View, export_stills, parse_modes, yaw_sweep
    from core.progress import TqdmProgress

    seeds, latent = read_source(args)
    modes = parse_modes(args.mode)
    yaw, pitch = math.radians(args.yaw), math.radians(args.pitch)
    views = [View(v.yaw + yaw, pitch) for v in yaw_sweep(args.views, math.radians(args.yaw_range))]
    out = writable_dir(args.out)
    G, ws = open_generator(args, latent)
    progress = TqdmProgress("render", unit="view")
    try:
        paths = export_stills(G, seeds, views, out, modes, args.psi, args.cutoff, args.fov, args.res,
                              sheet=args.grid, depth_colormap=args.depth_colormap, progress=progress, ws=ws,
                              depth_mask=args.depth_mask)
    finally:
        progress.close()
    print(f"wrote {len(paths)} PNGs to {out}")
    return 0
