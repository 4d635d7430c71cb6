"""Print what is inside a checkpoint: format, resolutions, SR class, parameters, constructor kwargs."""
from __future__ import annotations

import argparse
import json

HELP = "Show what a checkpoint holds (original .pkl, our .ckpt, a run directory or a G_ema.pt directory)."
EXAMPLES = """examples:
  python main.py info ffhq512-128.pkl
  python main.py info runs/00001-tiny --json

Constructor kwargs are the original TriPlaneGenerator's; 'project_extensions' lists settings only this
project understands (a model using plane_resolution or sr_widths cannot be built by the original code)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="network pickle, .ckpt file, training run directory or export directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from core.describe import describe_checkpoint
    info = describe_checkpoint(args.checkpoint)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    nested = ("constructor_kwargs", "rendering_kwargs", "project_extensions")
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key in nested:
            continue
        if key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f} M)"
        print(f"{key:<{width}}  {value}")
    for section in nested:
        print(f"{section}:")
        items = sorted(info[section].items())
        if not items:
            print("  none")
        for key, value in items:
            print(f"  {key:<32} {value}")
    return 0
