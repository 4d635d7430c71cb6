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
    from cli.common import add_device_argument, float_in, int_in, seed_list
    p.add_argument("network", help="network pickle, .ckpt file or training run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seeds", type=seed_list, help="seeds, e.g. 0-7")
    src.add_argument("--latent", metavar="NPZ", help="an inverted latent (invert's latent.npz) instead of seeds")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--yaw", type=float_in(-360, 360), default=0.0, help="camera yaw offset in degrees (default 0)")
    p.add_argument("--pitch", type=float_in(-90, 90), default=0.0, help="camera pitch offset in degrees, > 0 = lower")
    p.add_argument("--views", type=int_in(1, 360), default=1,
                   help="N cameras: a yaw sweep of --yaw +- --yaw-range (default 1 = just --yaw)")
    p.add_argument("--yaw-range", type=float_in(0, 180), default=23.0, help="half-width of the sweep in degrees (23)")
    p.add_argument("--fov", type=float_in(0, 179, open_lo=True), help="field of view in degrees "
                   "(default: the checkpoint's; 18.837 for EG3D's)")
    p.add_argument("--psi", type=float_in(-10, 10), default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--cutoff", type=int_in(0, 64), default=None, help="truncate only the first N ws (default: all)")
    p.add_argument("--mode", default="image",
                   help="comma-separated: image (super-resolved), image_raw, image_depth (default image)")
    p.add_argument("--res", type=int_in(16, 1024), default=None,
                   help="neural rendering resolution (default: the model's)")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True,
                   help="also write one contact sheet per mode (default on)")
    p.add_argument("--depth-colormap", action="store_true", help="colour depth images (default grey)")
    p.add_argument("--depth-mask", action=argparse.BooleanOptionalAction, default=True,
                   help="depth images: pixels of opacity < 0.5 are background, drawn as the far end "
                        "(black) and left out of the min-max range (default on; --no-depth-mask: every pixel)")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    import math

    from cli.common import pick_device, writable_dir
    from core.checkpoint import load_generator
    from core.images import View, export_stills, parse_modes, yaw_sweep
    from core.latents import apply_latent, load_latent, parse_seeds
    from core.progress import TqdmProgress

    seeds = parse_seeds(args.seeds) if args.seeds else [0]
    latent = load_latent(args.latent) if args.latent else None
    modes = parse_modes(args.mode)
    if args.fov is not None and not 0 < args.fov < 180:
        raise ValueError(f"--fov must be between 0 and 180 degrees, got {args.fov}")
    if args.res is not None and not 16 <= args.res <= 1024:
        raise ValueError(f"--res must be between 16 and 1024, got {args.res}")
    yaw, pitch = math.radians(args.yaw), math.radians(args.pitch)
    views = [View(v.yaw + yaw, pitch) for v in yaw_sweep(args.views, math.radians(args.yaw_range))]
    out = writable_dir(args.out)
    G = load_generator(args.network, pick_device(args.device))
    ws = apply_latent(G, latent) if latent is not None else None
    progress = TqdmProgress("render", unit="view")
    try:
        paths = export_stills(G, seeds, views, out, modes, args.psi, args.cutoff, args.fov, args.res,
                              sheet=args.grid, depth_colormap=args.depth_colormap, progress=progress, ws=ws,
                              depth_mask=args.depth_mask)
    finally:
        progress.close()
    print(f"wrote {len(paths)} PNGs to {out}")
    return 0
