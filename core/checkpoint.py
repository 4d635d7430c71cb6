"""Checkpoints: the original release's network pickles (read safely) and the project's own format.

Original pickles embed Python source that the official loader executes. Here a restricted unpickler
resolves only an explicit allow-list of globals (EG3D ref §3.3); persistent objects and the original's
`training.*` / `torch.nn.modules.*` classes become inert stubs that merely hold their `__dict__`, from
which the state_dict is flattened in the original key order and loaded into our own modules. Nothing
from the file is executed or compiled.

Our own format is one `torch.save` dict (loadable with `torch.load(weights_only=True)`), written
atomically, holding the constructor kwargs, rendering kwargs, weights and a sha256 digest of the tensors.

Both formats are read by the restricted unpickler of core/safe_unpickle.py; this module checks what comes
out (module trees, constructor kwargs, weights, digest) before it builds a network.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import CheckpointError, one_line
from core.fileio import atomic_path
from core.safe_unpickle import (
    MAX_DEPTH,
    MAX_TENSORS,
    Budget,
    Stub,
    all_tensors,
    check_amplification,
    open_regular,
    unpickle_pickle,
    unpickle_torch_zip,
)
from core.triplane import TriPlaneGenerator

FORMAT = "triplane-studio"
VERSION = 1
CHECKPOINT_SUFFIXES = (".ckpt", ".pkl", ".pt", ".pth")

def _plain(value: Any, depth: int = 0, budget: Budget | None = None) -> Any:
    """EasyDicts and other containers -> plain dicts/lists (so kwargs are JSON- and torch.load-safe)."""
    budget = budget or Budget(100_000)
    budget.spend("kwargs")
    if depth > MAX_DEPTH:
        raise CheckpointError("kwargs nested too deeply (or cyclic)")
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, depth + 1, budget) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v, depth + 1, budget) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flatten(stub: Any, prefix: str = "", depth: int = 0, budget: Budget | None = None) -> dict[str, torch.Tensor]:
    """A stub module tree -> state_dict in the original order: parameters, buffers, then children."""
    budget = budget or Budget(100_000)
    budget.spend("module tree")
    if depth > MAX_DEPTH:
        raise CheckpointError("module tree nested too deeply (or cyclic)")
    state = stub.state if isinstance(stub, Stub) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{prefix or 'module'} has no module state")
    out: dict[str, torch.Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(skip, (set, frozenset)):
        raise CheckpointError(f"{prefix or 'module'} has a malformed buffer set")
    for group in ("_parameters", "_buffers"):
        entries = state.get(group) or {}
        if not isinstance(entries, dict):
            raise CheckpointError(f"{prefix or 'module'}: {group} is not a dict")
        for name, t in entries.items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(name, str) or not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = t
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CheckpointError(f"{prefix or 'module'}: _modules is not a dict")
    for name, child in children.items():
        if child is not None:
            out.update(_flatten(child, f"{prefix}{name}.", depth + 1, budget))
            if len(out) > MAX_TENSORS:
                raise CheckpointError(f"more than {MAX_TENSORS:,} weights")
    return out


def read_network_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read an original network pickle safely -> {'G_ema': {...}, 'G': ..., 'D': ..., 'training_set_kwargs'}.

    Each network entry is a dict with class_name, init_kwargs, state_dict and the generator's
    rendering_kwargs / neural_rendering_resolution where present. Any damage is one CheckpointError.
    """
    try:
        data = unpickle_pickle(path)
        return _network_entries(path, data)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read the network pickle") from None
    except Exception as e:  # noqa: BLE001  any failure on hostile bytes: struct.error, EOFError, RecursionError...
        raise CheckpointError(f"{path} is not a readable network pickle "
                              f"(truncated or corrupt: {type(e).__name__}: {one_line(e, 120)})") from None


def _network_entries(path: str | os.PathLike, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict with G_ema, found {type(data).__name__}")
    out: dict[str, Any] = {"training_set_kwargs": _plain(data.get("training_set_kwargs"))}
    for key in ("G_ema", "G", "D"):
        obj = data.get(key)
        if obj is None:
            continue
        if not isinstance(obj, Stub) or not isinstance(obj.state, dict):
            raise CheckpointError(f"{path}: {key} is not a network object")
        st = obj.state
        out[key] = {
            "class_name": obj.class_name.split(".")[-1],
            "init_args": _plain(st.get("_init_args", ())),
            "init_kwargs": _plain(st.get("_init_kwargs", {})),
            "state_dict": _flatten(obj),
            "rendering_kwargs": _plain(st.get("rendering_kwargs")),
            "neural_rendering_resolution": st.get("neural_rendering_resolution"),
        }
    if "G_ema" not in out:
        keys = sorted(str(k)[:40] for k in list(data)[:20])
        raise CheckpointError(f"{path}: no G_ema network in the pickle (keys: {keys})")
    check_amplification(t for key in ("G_ema", "G", "D") if key in out for t in out[key]["state_dict"].values())
    return out


# ---- our own format -----------------------------------------------------------------------------------
def tensor_digest(data: Any) -> str:
    """sha256 over every tensor's name (its path in the dict), dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    budget = Budget()

    def walk(name: str, value: Any, depth: int) -> None:
        budget.spend("checkpoint")
        if depth > MAX_DEPTH:
            raise CheckpointError("checkpoint nested too deeply (or cyclic)")
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                walk(f"{name}/{k}", value[k], depth + 1)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{name}/{i}", v, depth + 1)
    walk("", {k: v for k, v in data.items() if k != "digest"}, 0)
    return "sha256:" + h.hexdigest()


def save_checkpoint(path: str | os.PathLike, G_ema: TriPlaneGenerator, *, G: nn.Module | None = None,
                    D: nn.Module | None = None, training: dict | None = None) -> None:
    """Write the project's checkpoint atomically (temp file, fsync, rename), with a digest of its tensors.

    `training` (optimizer states, progress, RNG, options) must hold only tensors, numbers, strings,
    lists and dicts so that the file stays loadable with weights_only=True.
    """
    def cpu(module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}

    data: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "G_kwargs": _plain(G_ema.init_kwargs),
        "rendering_kwargs": _plain(G_ema.rendering_kwargs),
        "neural_rendering_resolution": int(G_ema.neural_rendering_resolution),
        "G_ema": cpu(G_ema),
    }
    if G is not None:
        data["G"] = cpu(G)
    if D is not None:
        data["D_kwargs"] = _plain(getattr(D, "init_kwargs", {}))
        data["D"] = cpu(D)
    if training is not None:
        data["training"] = training
    data["digest"] = tensor_digest(data)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Our own checkpoint -> its raw dict (format, version, G_kwargs, G_ema, and G/D/training if saved).

    Read with the restricted unpickler (what torch.load(weights_only=True) allows, with bounds); the
    tensor digest is verified when the file has one (files written before digests existed have none).
    """
    try:
        with open_regular(path) as f:
            data = unpickle_torch_zip(f, os.fstat(f.fileno()).st_size)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read the checkpoint") from None
    except Exception as e:  # noqa: BLE001  damaged zips and pickles: BadZipFile, EOFError, struct.error...
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"(truncated or corrupt: {type(e).__name__}: {one_line(e, 120)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a {FORMAT} checkpoint")
    version = data.get("version", 0)
    if type(version) is not int:
        raise CheckpointError(f"{path}: malformed format version")
    if version > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {version} > {VERSION})")
    for key in ("G_kwargs", "G_ema"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    try:
        check_amplification(all_tensors(data))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if "digest" in data:
        try:
            actual = tensor_digest(data)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        if data["digest"] != actual:
            raise CheckpointError(f"{path}: the weights do not match the digest recorded when the file was "
                                  "written (the file is damaged)")
    return data


# ---- loading a generator from either ------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A file, or a training run directory (-> its newest snapshot by name); a G_ema.pt + init_kwargs.json
    directory is returned as is."""
    from core.exchange import is_exchange_dir
    p = Path(path)
    if is_exchange_dir(p):
        return p
    if p.is_dir():
        snaps = sorted(f for f in p.iterdir() if f.suffix in CHECKPOINT_SUFFIXES and f.name.startswith(
            ("network-snapshot", "snapshot")))
        if not snaps:
            raise CheckpointError(f"{p} is a directory without network-snapshot-*.ckpt/.pkl files")
        return snaps[-1]
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if not p.is_file():
        raise CheckpointError(f"{p} is not a regular file")
    return p


def sniff_format(path: str | os.PathLike) -> str:
    """'studio' (torch zip), 'pickle' (original network pickle) or raise CheckpointError."""
    with open_regular(path) as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "studio"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(f"{path} is neither a network pickle nor a {FORMAT} checkpoint"
                          + (" (empty file)" if not head else ""))


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
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weights (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(k[:60] for k in unexpected[:3])})")
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


def load_generator(path: str | os.PathLike, device: torch.device | str | None = None) -> TriPlaneGenerator:
    """The EMA generator in eval mode from an original network pickle, our .ckpt, a run directory, or a
    G_ema.pt + init_kwargs.json directory (core.exchange)."""
    from core.exchange import is_exchange_dir, load_exchange_dir
    if is_exchange_dir(path):
        G = load_exchange_dir(path)
        return G.to(device) if device is not None else G
    path = resolve_checkpoint(path)
    if sniff_format(path) == "pickle":
        g = read_network_pickle(path)["G_ema"]
        if g["class_name"] != "TriPlaneGenerator":
            raise CheckpointError(f"{path}: G_ema is a {g['class_name']}, not an EG3D TriPlaneGenerator")
        G = build_generator(g["init_kwargs"], g["state_dict"], g["rendering_kwargs"],
                            g["neural_rendering_resolution"], source=str(path))
    else:
        d = load_checkpoint(path)
        G = build_generator(d["G_kwargs"], d["G_ema"], d.get("rendering_kwargs"),
                            d.get("neural_rendering_resolution"), source=str(path))
    return G.to(device) if device is not None else G
