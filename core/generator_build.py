"""The bottom of the checkpoint layers: checked constructor kwargs -> a TriPlaneGenerator with its weights.

Every format reader (core.network_pickle, core.exchange, our own format in core.checkpoint) ends here:
the kwargs are checked (types, finite numbers, ranges) and the network is built on the meta device and
compared with the file's weights before any real allocation. The constructor kwargs are the original's
(`TriPlaneGenerator(**init_kwargs)`, EG3D ref §1.1, §1.10); `extensions` names the ones only this project
understands (a model using them cannot be built by the original code).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from core.errors import CheckpointError, one_line
from core.safe_unpickle import MAX_DEPTH, Budget
from core.triplane import TriPlaneGenerator

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


def plain(value: Any, depth: int = 0, budget: Budget | None = None) -> Any:
    """EasyDicts and other containers -> plain dicts/lists (so kwargs are JSON- and torch.load-safe)."""
    budget = budget or Budget(100_000)
    budget.spend("kwargs")
    if depth > MAX_DEPTH:
        raise CheckpointError("kwargs nested too deeply (or cyclic)")
    if isinstance(value, dict):
        return {k: plain(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, depth + 1, budget) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v, depth + 1, budget) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# Ranges of the constructor and rendering settings, wherever they appear in the kwargs tree: generous
# bounds around every released and CPU-sized model, tight enough that a hostile value cannot make the
# network (or a later render) exhaust memory or time.
_INT_RANGES = {
    "z_dim": (1, 4096), "w_dim": (1, 4096), "c_dim": (0, 4096), "img_resolution": (4, 4096),
    "img_channels": (1, 16), "sr_num_fp16_res": (0, 16), "num_fp16_res": (0, 16), "channel_base": (1, 1 << 20),
    "channel_max": (1, 4096), "plane_resolution": (4, 2048), "num_layers": (0, 32), "num_ws": (1, 64),
    "depth_resolution": (1, 1024), "depth_resolution_importance": (0, 1024), "image_resolution": (4, 4096),
    "channels": (1, 4096), "sr_widths": (1, 4096),
}
_POSITIVE = ("box_warp", "avg_camera_radius", "avg_camera_fov")


def _check_settings(value: Any, where: str, key: str = "", depth: int = 0, budget: Budget | None = None) -> None:
    """Types and ranges of constructor/rendering kwargs: plain values, finite numbers, known ranges."""
    budget = budget or Budget(10_000)
    budget.spend(where)
    if depth > 6:
        raise CheckpointError(f"{where} are nested too deeply")
    if isinstance(value, dict):
        if len(value) > 256:
            raise CheckpointError(f"{where} have too many entries")
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: a key that is not a string")
            _check_settings(v, where, k, depth + 1, budget)
        return
    if isinstance(value, (list, tuple)):
        if len(value) > 64:
            raise CheckpointError(f"{where}: {key} is too long")
        for v in value:
            _check_settings(v, where, key, depth + 1, budget)
        return
    if isinstance(value, str):
        if len(value) > 1000:
            raise CheckpointError(f"{where}: {key} is too long")
        return
    if value is None or isinstance(value, bool):
        return
    if not isinstance(value, (int, float)):
        raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, expected a plain value")
    if not math.isfinite(value) or abs(value) > 1 << 30:
        raise CheckpointError(f"{where}: {key} = {value!r:.40} is not a usable number")
    if key in _INT_RANGES:
        lo, hi = _INT_RANGES[key]
        if not isinstance(value, int) or not lo <= value <= hi:
            raise CheckpointError(f"{where}: {key} = {value!r:.40} (expected an integer in {lo}..{hi})")
    if key in _POSITIVE and value <= 0:
        raise CheckpointError(f"{where}: {key} = {value!r:.40} must be positive")


def _check_kwargs(kwargs: Any, rendering_kwargs: Any, neural_rendering_resolution: Any, source: str) -> None:
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: the generator's constructor kwargs are not a dict")
    _check_settings(kwargs, f"{source}: generator kwargs")
    for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if name not in kwargs:
            raise CheckpointError(f"{source}: generator kwargs lack {name}")
    for name in ("mapping_kwargs", "sr_kwargs", "rendering_kwargs"):
        if kwargs.get(name) is not None and not isinstance(kwargs[name], dict):
            raise CheckpointError(f"{source}: generator kwargs: {name} is not a dict")
    if rendering_kwargs is not None:
        if not isinstance(rendering_kwargs, dict):
            raise CheckpointError(f"{source}: rendering_kwargs is not a dict")
        _check_settings(rendering_kwargs, f"{source}: rendering_kwargs")
    if neural_rendering_resolution is not None and (
            type(neural_rendering_resolution) is not int or not 4 <= neural_rendering_resolution <= 2048):
        raise CheckpointError(f"{source}: neural_rendering_resolution {neural_rendering_resolution!r:.40} "
                              "(expected an integer in 4..2048)")


def _check_weights(state_dict: Any, source: str) -> None:
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
        raise CheckpointError(f"{source}: the weights are not a dict of named tensors")
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: weight {k[:80]} is not a tensor")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{source}: weight {k[:80]} contains NaN or infinity (a damaged or diverged "
                                  "network)")


def build_generator(kwargs: dict, state_dict: dict[str, torch.Tensor], rendering_kwargs: dict | None = None,
                    neural_rendering_resolution: int | None = None, source: str = "checkpoint"
                    ) -> TriPlaneGenerator:
    """Construct a TriPlaneGenerator from constructor kwargs and load weights with clear key errors.

    The kwargs are checked first, and the network is first built on the meta device (no memory) so that
    its weight names and shapes are compared with the file's before any real allocation.
    """
    _check_kwargs(kwargs, rendering_kwargs, neural_rendering_resolution, source)
    _check_weights(state_dict, source)
    kwargs = {k: v for k, v in kwargs.items() if k != "class_name"}
    try:
        with torch.device("meta"):
            own = TriPlaneGenerator(**kwargs).state_dict()
    except Exception as e:  # noqa: BLE001  TypeError, ValueError, ZeroDivisionError, RuntimeError from odd combinations
        raise CheckpointError(f"{source}: cannot build the generator from its kwargs ({one_line(e, 160)})") from None
    label_std = state_dict.get("dataset_label_std")  # registered by the original trainer (ref §1.1)
    if label_std is not None:
        if label_std.dim() != 1 or label_std.numel() > 4096:
            raise CheckpointError(f"{source}: dataset_label_std has shape {tuple(label_std.shape)}, "
                                  "expected one number per label dimension")
        own["dataset_label_std"] = label_std
    parts = [f"{len(keys)} {what} weights (e.g. {', '.join(k[:60] for k in keys[:3])})"
             for what, keys in (("missing", [k for k in own if k not in state_dict]),
                                ("unexpected", [k for k in state_dict if k not in own])) if keys]
    if parts:
        raise CheckpointError(f"{source}: weights do not match the generator: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape) or state_dict[k].dtype.is_floating_point != \
                v.dtype.is_floating_point:
            raise CheckpointError(f"{source}: weight {k} has shape {tuple(state_dict[k].shape)} "
                                  f"({state_dict[k].dtype}), expected {tuple(v.shape)} ({v.dtype})")
    try:
        G = TriPlaneGenerator(**kwargs)
        if label_std is not None:
            G.register_buffer("dataset_label_std", label_std.clone())
        G.load_state_dict(state_dict)
        if rendering_kwargs:
            G.rendering_kwargs = rendering_kwargs
        if neural_rendering_resolution:
            G.neural_rendering_resolution = int(neural_rendering_resolution)
    except MemoryError:
        raise CheckpointError(f"{source}: not enough memory to build the generator") from None
    except Exception as e:  # noqa: BLE001  (checked kwargs, but one line whatever torch raises)
        raise CheckpointError(f"{source}: cannot build the generator ({one_line(e, 160)})") from None
    return G.eval().requires_grad_(False)
