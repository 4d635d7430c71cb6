"""What a generator is: constructor kwargs, resolutions, sizes and our extensions, for `info` and the studio.

The constructor kwargs are the original's (`TriPlaneGenerator(**init_kwargs)`, EG3D ref §1.1, §1.10);
a model that uses one of our small-model extensions cannot be built by the original code, and
`extensions` says which.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

EXTENSIONS = {
    "plane_resolution": "tri-plane resolution other than 256 (the original always builds 256² planes)",
    "sr_kwargs.sr_widths": "super-resolution block widths (the original's SR blocks have fixed widths)",
}
"""Constructor kwargs that only this project understands: the original cannot build such a model."""

IGNORED_EXTENSIONS = {
    "rendering_kwargs.avg_camera_fov": "default camera FOV written by our trainer (the original's tools "
                                       "use 18.837 and ignore the key)",
}
"""rendering_kwargs keys of ours that the original carries along without reading."""


def constructor_kwargs(G) -> dict:
    """The kwargs that rebuild G: `TriPlaneGenerator(**constructor_kwargs(G))`, rendering_kwargs included."""
    kwargs = copy.deepcopy(dict(G.init_kwargs))
    kwargs["rendering_kwargs"] = copy.deepcopy(dict(G.rendering_kwargs))
    return kwargs


def extensions(kwargs: dict, include_ignored: bool = False) -> dict[str, str]:
    """Project-only settings used by constructor kwargs -> {dotted name: what it is}."""
    found = {}
    table = {**EXTENSIONS, **(IGNORED_EXTENSIONS if include_ignored else {})}
    for name, why in table.items():
        section, _, key = name.rpartition(".")
        holder = kwargs.get(section) if section else kwargs
        if isinstance(holder, dict) and holder.get(key) is not None:
            found[name] = why
    return found


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


def describe_checkpoint(path: str | os.PathLike) -> dict:
    """Summary of a checkpoint file or run directory (format, networks, training state, the generator)."""
    from core.checkpoint import load_checkpoint, load_generator, read_network_pickle, resolve_checkpoint, sniff_format
    from core.exchange import is_exchange_dir
    p = Path(path)
    extra: dict = {}
    if is_exchange_dir(p):
        resolved, fmt = p, "original G_ema.pt + init_kwargs.json directory"
    else:
        resolved = resolve_checkpoint(p)
        kind = sniff_format(resolved)
        if kind == "pickle":
            data = read_network_pickle(resolved)
            fmt = "EG3D network pickle"
            extra["training_set"] = data.get("training_set_kwargs")
        else:
            data = load_checkpoint(resolved)
            fmt = "triplane-studio checkpoint"
            if isinstance(data.get("training"), dict):
                t = data["training"]
                extra["training"] = {k: t[k] for k in ("kimg", "config", "cur_nimg") if k in t}
        extra = {"networks": [k for k in ("G", "D", "G_ema") if k in data], **extra}
    G = load_generator(resolved)
    return {"path": str(resolved), "format": fmt, **describe_generator(G), **extra}


def format_name(path: str | os.PathLike) -> str:
    """'pickle', 'studio' or 'original state_dict dir' for a resolved checkpoint path."""
    from core.checkpoint import sniff_format
    from core.exchange import is_exchange_dir
    return "original state_dict dir" if is_exchange_dir(path) else sniff_format(path)


def model_rows(G, path: str | os.PathLike) -> dict[str, str]:
    """Short rows for the studio's model panel."""
    o = G.options
    fmt = format_name(path)
    ext = extensions(constructor_kwargs(G))
    return {"file": str(path), "format": fmt,
            "output": f"{G.img_resolution}px", "neural res": f"{G.neural_rendering_resolution}px",
            "superresolution": type(G.superresolution).__name__,
            "parameters": f"{sum(p.numel() for p in G.parameters()):,}",
            "z / w / c dims": f"{G.z_dim} / {G.w_dim} / {G.c_dim}", "num_ws": str(G.num_ws),
            "samples": f"{o.depth_resolution} + {o.depth_resolution_importance} per ray",
            "ray range": f"{o.ray_start} .. {o.ray_end}, box {o.box_warp}",
            "extensions": ", ".join(ext) if ext else "none (the original can load it)"}
