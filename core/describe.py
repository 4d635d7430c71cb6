"""What a generator is: constructor kwargs, resolutions, sizes and our extensions, for `info` and the studio.

The constructor kwargs are the original's (`TriPlaneGenerator(**init_kwargs)`, EG3D ref §1.1, §1.10);
a model that uses one of our small-model extensions cannot be built by the original code, and
`project_extensions` says which (core.generator_build.extensions).
"""
from __future__ import annotations

import os

from core.checkpoint import read_networks, sniff_format
from core.exchange import is_exchange_dir
from core.generator_build import constructor_kwargs, extensions


def describe_generator(G) -> dict:
    """Summary of a generator as a plain, JSON-ready dict."""
    o = G.options
    kwargs = constructor_kwargs(G)
    return {
        "image_resolution": G.img_resolution,
        "neural_rendering_resolution": G.neural_rendering_resolution,
        "plane_resolution": G.backbone.img_resolution,
        "superresolution": o.superresolution_module.split(".")[-1],
        "parameters": sum(p.numel() for p in G.parameters()),
        "z_dim": G.z_dim, "w_dim": G.w_dim, "c_dim": G.c_dim, "num_ws": G.num_ws,
        "depth_samples": [o.depth_resolution, o.depth_resolution_importance],
        "ray_range": [o.ray_start, o.ray_end], "box_warp": o.box_warp,
        "camera": {"radius": o.avg_camera_radius, "pivot": list(o.avg_camera_pivot)},
        "constructor_kwargs": {k: v for k, v in kwargs.items() if k != "rendering_kwargs"},
        "rendering_kwargs": kwargs["rendering_kwargs"],
        "project_extensions": extensions(kwargs, include_ignored=True),
        "original_can_load": not extensions(kwargs),
    }


FORMAT_NAMES = {"pickle": "EG3D network pickle", "studio": "triplane-studio checkpoint",
                "exchange": "original G_ema.pt + init_kwargs.json directory"}


def describe_checkpoint(path: str | os.PathLike) -> dict:
    """Summary of a checkpoint file or run directory (format, networks, training state, the generator)."""
    f = read_networks(path)
    extra: dict = {}
    if f.format != "exchange":
        extra["networks"] = [k for k in ("G", "D", "G_ema") if getattr(f, k) is not None]
    if f.format == "pickle":
        extra["training_set"] = f.training_set_kwargs
    elif isinstance(f.training, dict):
        extra["training"] = {k: f.training[k] for k in ("kimg", "config", "cur_nimg") if k in f.training}
    return {"path": str(f.path), "format": FORMAT_NAMES[f.format], **describe_generator(f.generator()), **extra}


def model_rows(G, path: str | os.PathLike) -> dict[str, str]:
    """Short rows for the studio's model panel."""
    o = G.options
    fmt = "original state_dict dir" if is_exchange_dir(path) else sniff_format(path)
    ext = extensions(constructor_kwargs(G))
    return {"file": str(path), "format": fmt,
            "output": f"{G.img_resolution}px", "neural res": f"{G.neural_rendering_resolution}px",
            "superresolution": type(G.superresolution).__name__,
            "parameters": f"{sum(p.numel() for p in G.parameters()):,}",
            "z / w / c dims": f"{G.z_dim} / {G.w_dim} / {G.c_dim}", "num_ws": str(G.num_ws),
            "samples": f"{o.depth_resolution} + {o.depth_resolution_importance} per ray",
            "ray range": f"{o.ray_start} .. {o.ray_end}, box {o.box_warp}",
            "extensions": ", ".join(ext) if ext else "none (the original can load it)"}
