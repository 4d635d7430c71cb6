"""`main.py dataset`: make, check and mirror posed training datasets."""
from __future__ import annotations

import argparse
import math

HELP = """Make, check or mirror a posed dataset (EG3D format: images + dataset.json).

  synth   render a procedural multi-view dataset of coloured primitives
  check   validate a folder or zip and say what is inside (or what is wrong)
  mirror  write a copy with x-flipped images and correctly flipped cameras"""

EXAMPLES = """examples:
  python main.py dataset synth --out data/shapes --count 3000 --res 128 --seed 0
  python main.py dataset check data/shapes
  python main.py dataset mirror data/faces --out data/faces_mirrored"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import angle_range, float_in, int_in
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("synth", help="render a procedural posed dataset")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--count", type=int_in(1, 1_000_000), default=2000, help="number of images (default 2000)")
    s.add_argument("--res", type=int_in(8, 1024), default=128, help="image resolution (default 128)")
    s.add_argument("--seed", type=int_in(0, 2 ** 32 - 1), default=0, help="random seed (default 0)")
    s.add_argument("--kinds", default="sphere,box,torus,cylinder",
                   help="primitive family, comma-separated (default: all four)")
    s.add_argument("--max-prims", type=int_in(1, 3), default=2, help="primitives per object, 1-3 (default 2)")
    s.add_argument("--radius", type=float_in(0, 100, open_lo=True), default=1.8,
                   help="camera distance (default 1.8)")
    s.add_argument("--focal", type=float_in(0, 100, open_lo=True), default=1.8,
                   help="normalised focal length fx/W (default 1.8)")
    s.add_argument("--yaw-deg", type=float_in(0, 180), default=180.0,
                   help="yaw range +-DEG around the front (default 180)")
    s.add_argument("--pitch-deg", type=angle_range(-90, 90), default="-8,43",
                   help="elevation range MIN,MAX in degrees (default -8,43)")
    c = sub.add_parser("check", help="validate a dataset")
    c.add_argument("path", help="dataset folder or zip")
    m = sub.add_parser("mirror", help="add x-flipped copies with flipped cameras")
    m.add_argument("path", help="source dataset folder or zip")
    m.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    from core.progress import TqdmProgress
    if args.action == "synth":
        return _synth(args, TqdmProgress("rendering", unit="img"))
    if args.action == "check":
        from training.dataset import open_dataset
        ds = open_dataset(args.path, progress=TqdmProgress("checking", unit="img"), decode=True)
        print(ds.info().describe())
        return 0
    from training.dataset import mirror_dataset
    out = mirror_dataset(args.path, args.out, progress=TqdmProgress("mirroring", unit="img"))
    print(f"wrote {out}")
    return 0


def _synth(args: argparse.Namespace, progress) -> int:
    from cli.common import writable_dir
    from training.synthetic import KINDS, SynthSettings, write_synthetic_dataset
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"--kinds: unknown primitive {bad[0] if bad else '(none)'}; choose from {', '.join(KINDS)}")
    if not 1 <= args.max_prims <= 3:
        raise ValueError("--max-prims must be 1, 2 or 3")
    if args.count < 1 or args.res < 8:
        raise ValueError("--count must be >= 1 and --res >= 8")
    try:
        lo, hi = (math.radians(float(v)) for v in args.pitch_deg.split(","))
    except ValueError:
        raise ValueError(f"--pitch-deg: expected MIN,MAX in degrees, got {args.pitch_deg!r}") from None
    yaw = math.radians(args.yaw_deg)
    settings = SynthSettings(radius=args.radius, focal=args.focal, yaw_range=(-yaw, yaw), pitch_range=(lo, hi),
                             max_prims=args.max_prims, kinds=kinds)
    out = write_synthetic_dataset(writable_dir(args.out), args.count, args.res, seed=args.seed,
                                  settings=settings, progress=progress)
    progress.close()
    print(f"wrote {args.count} images to {out}")
    return 0
