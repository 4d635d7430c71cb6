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
    s.add_argument("--family", choices=("primitives", "toys", "heads"), default="primitives",
                   help="primitives: random unions of --kinds; toys: chairs, tables, cars, lamps, trees and "
                        "snowmen standing upright, front +z (both seen from all around); heads: stylised heads "
                        "facing +z, FFHQ-like poses (yaw normal, std 20 deg, within +-45) (default primitives)")
    s.add_argument("--preview", metavar="PNG", help="also write a contact sheet of the first 32 images")
    s.add_argument("--kinds", default="sphere,box,torus,cylinder",
                   help="primitive family, comma-separated (default: all four)")
    s.add_argument("--max-prims", type=int_in(1, 3), default=2, help="primitives per object, 1-3 (default 2)")
    s.add_argument("--radius", type=float_in(0, 100, open_lo=True), default=1.8,
                   help="camera distance (default 1.8)")
    s.add_argument("--focal", type=float_in(0, 100, open_lo=True), default=1.8,
                   help="normalised focal length fx/W (default 1.8)")
    s.add_argument("--yaw-deg", type=float_in(0, 180),
                   help="yaw range +-DEG around the front (default 180; heads 45)")
    s.add_argument("--pitch-deg", type=angle_range(-90, 90),
                   help="elevation range MIN,MAX in degrees (default -8,43; heads -5,25)")
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
        from training.dataset import check_trainable, open_dataset
        ds = open_dataset(args.path, progress=TqdmProgress("checking", unit="img"), decode=True)
        check_trainable(ds)
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
    heads = args.family == "heads"
    pitch_deg = args.pitch_deg or ("-5,25" if heads else "-8,43")
    lo, hi = (math.radians(float(v)) for v in pitch_deg.split(","))
    yaw = math.radians(args.yaw_deg if args.yaw_deg is not None else 45.0 if heads else 180.0)
    settings = SynthSettings(radius=args.radius, focal=args.focal, yaw_range=(-yaw, yaw), pitch_range=(lo, hi),
                             max_prims=args.max_prims, kinds=kinds, family=args.family,
                             smooth=0.01 if args.family == "toys" else SynthSettings.smooth,
                             yaw_std=math.radians(20.0) if heads else None)
    out = write_synthetic_dataset(writable_dir(args.out), args.count, args.res, seed=args.seed,
                                  settings=settings, progress=progress)
    progress.close()
    print(f"wrote {args.count} images to {out}")
    if args.preview:
        from training.synthetic import write_preview
        print(f"wrote {write_preview(out, args.preview)}")
    return 0
