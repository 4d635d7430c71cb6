"""`main.py video`: orbit, 360° and latent-interpolation MP4s of one seed or a grid of seeds."""
from __future__ import annotations

import argparse

HELP = "Render an H.264 MP4: the original orbit, a 360° turn, or interpolation between seeds."
EXAMPLES = """examples:
  python main.py video ffhq512-128.pkl --seeds 0 --out orbit.mp4
  python main.py video ffhq512-128.pkl --seeds 0-3 --grid 2x2 --path 360 --frames 120 --out turn.mp4
  python main.py video ffhq512-128.pkl --seeds 0-5 --path interp --mode image_depth --out interp.mp4
  python main.py video ffhq512-128.pkl --seeds 0 --path keyframes.json --frames 120 --out path.mp4

Writes OUT and beside it OUT-stem.cameras.npy ([frames, 25] camera labels). --path interp moves through
the seeds in W (cyclic cubic; the seeds are split evenly over the grid cells) while the camera orbits.
--path FILE.json follows a keyframed camera path saved by the studio's camera path editor
({"version": 1, "loop": false, "keyframes": [{"position": [x,y,z], "look_at": [x,y,z], "fov": deg}]}),
its --frames spread evenly over the path, rendered as the studio renders (one grid cell per seed)."""

PATH_KINDS = ("orbit", "360", "interp")


def path_argument(text: str) -> str:
    """argparse type of --path: a built-in path or a .json camera path file."""
    if text in PATH_KINDS or text.lower().endswith(".json"):
        return text
    raise argparse.ArgumentTypeError(f"expected {', '.join(PATH_KINDS)} or a camera path .json file, "
                                     f"got {text!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_depth_mask_argument, add_source_arguments, float_in, grid_spec, int_in
    add_source_arguments(p, "0-3", "MP4")
    p.add_argument("--path", type=path_argument, default="orbit", metavar="{orbit,360,interp,FILE.json}",
                   help="camera/latent path (default orbit: yaw +-0.35, pitch +-0.25, one loop) or a "
                        "keyframed camera path file")
    p.add_argument("--mode", choices=("image", "image_raw", "image_depth"), default="image",
                   help="what to show (default image = super-resolved)")
    add_depth_mask_argument(p)
    p.add_argument("--grid", type=grid_spec(64),
                   help="COLUMNSxROWS of cells (default: one cell per seed, near-square; interp 1x1)")
    p.add_argument("--frames", type=int_in(1, 100_000), default=240, help="frames in the video (default 240)")
    p.add_argument("--fps", type=float_in(0, 240, open_lo=True), default=30, help="frames per second (default 30)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cli.common import open_generator, read_source, writable_dir
    from core.progress import TqdmProgress
    from core.video import VideoOptions, parse_grid, render_camera_path_video, render_video

    seeds, latent = read_source(args)
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"--out {out}: the video file must end in .mp4")
    writable_dir(out.parent if str(out.parent) else ".")
    options = VideoOptions(path=args.path, frames=args.frames, fps=args.fps, mode=args.mode,
                           grid=parse_grid(args.grid) if args.grid else None, psi=args.psi,
                           cutoff=args.cutoff, fov_deg=args.fov, neural_resolution=args.res,
                           depth_mask=args.depth_mask)
    camera_file = None
    if args.path not in PATH_KINDS:  # a keyframed camera path: it replaces options.path
        from core.camera_path import CameraPath
        camera_file = CameraPath.load(args.path)
        if args.fov is not None:
            raise ValueError(f"--fov does not apply to --path {args.path} (its keyframes set the FOV)")
    G, ws = open_generator(args, latent)
    latent_ws = (lambda seed: ws) if ws is not None else None
    progress = TqdmProgress("video", unit="frame")
    try:
        if camera_file is None:
            video, cameras = render_video(G, seeds, out, options, progress, latent_ws)
        elif latent_ws is not None:  # explicit ws: the seed path's renderer with the file's cameras
            labels = camera_file.labels(options.frames, next(G.parameters()).device)
            video, cameras = render_video(G, seeds, out, options, progress, latent_ws, labels=labels)
        else:
            video, cameras = render_camera_path_video(G, seeds, camera_file, out, options, progress)
    finally:
        progress.close()
    print(f"wrote {video} and {cameras}")
    return 0
