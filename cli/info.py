"""Print what is inside a checkpoint: format, resolutions, SR class, parameters, cameras."""
from __future__ import annotations

import argparse
import json

HELP = "Show what a checkpoint holds (original .pkl, our .ckpt, or a run directory)."
EXAMPLES = """examples:
  python main.py info ffhq512-128.pkl
  python main.py info runs/00001-tiny --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="network pickle, .ckpt file or training run directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def describe(path: str) -> dict:
    """Summary of a checkpoint as a plain dict (also used by the studio's checkpoint panel)."""
    from core.checkpoint import (load_checkpoint, load_generator, read_network_pickle, resolve_checkpoint,
                                 sniff_format)
    resolved = resolve_checkpoint(path)
    fmt = sniff_format(resolved)
    G = load_generator(resolved)
    extra: dict = {}
    if fmt == "pickle":
        data = read_network_pickle(resolved)
        extra["networks"] = [k for k in ("G", "D", "G_ema") if k in data]
        extra["training_set"] = data.get("training_set_kwargs")
    else:
        data = load_checkpoint(resolved)
        extra["networks"] = [k for k in ("G", "D", "G_ema") if k in data]
        if "training" in data:
            t = data["training"]
            extra["training"] = {k: t[k] for k in ("kimg", "config", "cur_nimg") if isinstance(t, dict) and k in t}
    o = G.options
    params = sum(p.numel() for p in G.parameters())
    return {
        "path": str(resolved),
        "format": "EG3D network pickle" if fmt == "pickle" else "triplane-studio checkpoint",
        "image_resolution": G.img_resolution,
        "neural_rendering_resolution": G.neural_rendering_resolution,
        "plane_resolution": G.backbone.img_resolution,
        "superresolution": o.superresolution_module.split(".")[-1],
        "parameters": params,
        "z_dim": G.z_dim, "w_dim": G.w_dim, "c_dim": G.c_dim, "num_ws": G.num_ws,
        "depth_samples": [o.depth_resolution, o.depth_resolution_importance],
        "ray_range": [o.ray_start, o.ray_end], "box_warp": o.box_warp,
        "camera": {"radius": o.avg_camera_radius, "pivot": list(o.avg_camera_pivot)},
        "rendering_kwargs": G.rendering_kwargs,
        **extra,
    }


def run(args: argparse.Namespace) -> int:
    info = describe(args.checkpoint)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key == "rendering_kwargs":
            continue
        if key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f} M)"
        print(f"{key:<{width}}  {value}")
    print("rendering_kwargs:")
    for key, value in sorted(info["rendering_kwargs"].items()):
        print(f"  {key:<32} {value}")
    return 0
