"""`main.py video`: orbit, 360° and latent-interpolation MP4s of one seed or a grid of seeds."""
from __future__ import annotations

import argparse

HELP = "Render an H.264 MP4: the original orbit, a 360° turn, or interpolation between seeds."
EXAMPLES = """examples:
  python main.py video ffhq512-128.pkl --seeds 0 --out orbit.mp4
  python main.py video ffhq512-128.pkl --seeds 0-3 --grid 2x2 --path 360 --frames 120 --out turn.mp4
  python main.py video ffhq512-128.pkl --seeds 0-5 --path interp --mode image_depth --out interp.mp4

Writes OUT and beside it OUT-stem.cameras.npy ([frames, 25] camera labels). --path interp moves through
the seeds in W (cyclic cubic; the seeds are split evenly over the grid cells) while the camera orbits."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_device_argument
    p.add_argument("network", help="network pickle, .ckpt file or training run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seeds", help="seeds, e.g. 0-3")
    src.add_argument("--latent", metavar="NPZ", help="an inverted latent (invert's latent.npz) instead of seeds")
    p.add_argument("--out", required=True, metavar="MP4", help="output video file (.mp4)")
    p.add_argument("--path", choices=("orbit", "360", "interp"), default="orbit",
                   help="camera/latent path (default orbit: yaw +-0.35, pitch +-0.25, one loop)")
    p.add_argument("--mode", choices=("image", "image_raw", "image_depth"), default="image",
                   help="what to show (default image = super-resolved)")
    p.add_argument("--grid", help="COLUMNSxROWS of cells (default: one cell per seed, near-square; interp 1x1)")
    p.add_argument("--frames", type=int, default=240, help="frames in the video (default 240)")
    p.add_argument("--fps", type=float, default=30, help="frames per second (default 30)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--cutoff", type=int, default=None, help="truncate only the first N ws (default: all)")
    p.add_argument("--res", type=int, default=None,
                   help="neural rendering resolution (default: the model's, e.g. 128)")
    p.add_argument("--fov", type=float, help="camera FOV in degrees "
                   "(default: the checkpoint's; 18.837 for EG3D's)")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cli.common import pick_device, writable_dir
    from core.checkpoint import load_generator
    from core.latents import apply_latent, load_latent, parse_seeds
    from core.progress import TqdmProgress
    from core.video import VideoOptions, parse_grid, render_video

    seeds = parse_seeds(args.seeds) if args.seeds else [0]
    latent = load_latent(args.latent) if args.latent else None
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out {out}: the video file must end in .mp4")
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    if args.res is not None and not 16 <= args.res <= 1024:
        raise ValueError(f"--res must be between 16 and 1024, got {args.res}")
    writable_dir(out.parent if str(out.parent) else ".")
    options = VideoOptions(path=args.path, frames=args.frames, fps=args.fps, mode=args.mode,
                           grid=parse_grid(args.grid) if args.grid else None, psi=args.psi,
                           cutoff=args.cutoff, fov_deg=args.fov, neural_resolution=args.res)
    G = load_generator(args.network, pick_device(args.device))
    latent_ws = None
    if latent is not None:
        ws = apply_latent(G, latent)
        latent_ws = lambda seed: ws  # noqa: E731
    progress = TqdmProgress("video", unit="frame")
    try:
        video, cameras = render_video(G, seeds, out, options, progress, latent_ws)
    finally:
        progress.close()
    print(f"wrote {video} and {cameras}")
    return 0
