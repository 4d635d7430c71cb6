"""`main.py export`: write G_ema.pt + init_kwargs.json, the format the original code loads."""
from __future__ import annotations

import argparse

HELP = "Export the generator for the original EG3D code: DIR/G_ema.pt (state_dict) + DIR/init_kwargs.json."
EXAMPLES = """examples:
  python main.py export ffhq512-128.pkl --out ffhq-original
  python main.py export runs/00001-tiny --out tiny-export --allow-extensions

In the original code base (e.g. for pivotal tuning):
  kw = json.load(open("DIR/init_kwargs.json"))
  G = TriPlaneGenerator(**kw["init_kwargs"])
  G.load_state_dict(torch.load("DIR/G_ema.pt"), strict=True)
  G.neural_rendering_resolution = kw["neural_rendering_resolution"]
This project opens such a directory too (python main.py DIR, info DIR, render DIR ...).
Models using this project's small-model extensions (plane_resolution, sr_widths) cannot be built by the
original code: export refuses them unless --allow-extensions."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("network", help="network pickle, .ckpt file or training run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--allow-extensions", action="store_true",
                   help="write a model that uses project-only settings anyway (only this project loads it)")


def run(args: argparse.Namespace) -> int:
    import sys

    from cli.common import writable_dir
    from core.checkpoint import load_generator
    from core.exchange import check_exportable, export_original

    G = load_generator(args.network)
    used = check_exportable(G, args.allow_extensions)  # refuse before creating anything
    weights, kwargs = export_original(G, writable_dir(args.out), allow_extensions=args.allow_extensions)
    if used:
        print(f"warning: written for this project's loader only; the original cannot build it "
              f"({', '.join(used)})", file=sys.stderr)
    print(f"wrote {weights}")
    print(f"wrote {kwargs}")
    return 0
