"""Checkpoints: the original release's network pickles (read safely) and the project's own format.

Original pickles embed Python source that the official loader executes. Here a restricted unpickler
resolves only an explicit allow-list of globals (EG3D ref §3.3); persistent objects and the original's
`training.*` / `torch.nn.modules.*` classes become inert stubs that merely hold their `__dict__`, from
which the state_dict is flattened in the original key order and loaded into our own modules. Nothing
from the file is executed or compiled.

Our own format is one `torch.save` dict (loadable with `torch.load(weights_only=True)`), written
atomically, holding the constructor kwargs, rendering kwargs and weights.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import CheckpointError
from core.fileio import atomic_path
from core.triplane import TriPlaneGenerator

FORMAT = "triplane-studio"
VERSION = 1
CHECKPOINT_SUFFIXES = (".ckpt", ".pkl", ".pt", ".pth")


# ---- the restricted unpickler for original pickles -----------------------------------------------------
class _Stub:
    """Inert stand-in for a class of the original code base: keeps the pickled state, runs nothing."""

    class_name = "?"

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"<stub {self.class_name}>"


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""

    def __setstate__(self, state: Any) -> None:
        pass


def _stub_class(module: str, name: str) -> type:
    return type(name, (_Stub,), {"class_name": f"{module}.{name}", "__module__": "core.checkpoint.stubs"})


def _reconstruct_persistent(meta: Any) -> _Stub:
    """Replacement for torch_utils.persistence._reconstruct_persistent_obj: never reads module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise CheckpointError("persistent object with an unexpected layout")
    if meta.get("version") != 6:
        raise CheckpointError(f"persistent object version {meta.get('version')!r} (expected 6)")
    stub = _stub_class("persistent", str(meta.get("class_name")))()
    stub.__setstate__(meta["state"])
    return stub


def _load_storage(blob: bytes):
    """A storage saved by torch.save (legacy or zip layout), read with torch's weights-only unpickler."""
    if not isinstance(blob, (bytes, bytearray)):
        raise CheckpointError("tensor storage is not a byte string")
    try:
        return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as e:
        raise CheckpointError(f"unreadable tensor storage ({type(e).__name__})") from None


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError("tensor built from something that is not a storage")
    if isinstance(storage, torch.TypedStorage):
        dtype, storage = storage.dtype, storage._untyped_storage
    else:
        dtype = torch.uint8
    return torch.empty(0, dtype=dtype).set_(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("parameter built from something that is not a tensor")
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes) or dtype.hasobject:
        raise CheckpointError("malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "device"): torch.device,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        # Non-persistent classes of the original code base are pickled by reference: inert stubs.
        if (module == "training" or module.startswith(("training.", "torch.nn.modules."))) and name.isidentifier():
            return _stub_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise CheckpointError(f"refusing to load: the pickle references {module}.{name}, "
                              "which is not on the allow-list of an EG3D network pickle")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("unexpected persistent id in the pickle")


def _flatten(stub: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """A stub module tree -> state_dict in the original order: parameters, buffers, then children."""
    state = stub.state if isinstance(stub, _Stub) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{prefix or 'module'} has no module state")
    out: dict[str, torch.Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_flatten(child, f"{prefix}{name}."))
    return out


def _plain(value: Any) -> Any:
    """EasyDicts and other containers -> plain dicts/lists (so kwargs are JSON- and torch.load-safe)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if isinstance(value, list) else tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_network_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read an original network pickle safely -> {'G_ema': {...}, 'G': ..., 'D': ..., 'training_set_kwargs'}.

    Each network entry is a dict with class_name, init_kwargs, state_dict and the generator's
    rendering_kwargs / neural_rendering_resolution where present.
    """
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise CheckpointError(f"{path} is not a readable network pickle "
                              f"(truncated or corrupt: {type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict with G_ema, found {type(data).__name__}")
    out: dict[str, Any] = {"training_set_kwargs": _plain(data.get("training_set_kwargs"))}
    for key in ("G_ema", "G", "D"):
        obj = data.get(key)
        if obj is None:
            continue
        if not isinstance(obj, _Stub) or not isinstance(obj.state, dict):
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
        raise CheckpointError(f"{path}: no G_ema network in the pickle (keys: {sorted(map(str, data))})")
    return out


# ---- our own format -----------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, G_ema: TriPlaneGenerator, *, G: nn.Module | None = None,
                    D: nn.Module | None = None, training: dict | None = None) -> None:
    """Write the project's checkpoint atomically (temp file, fsync, rename).

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
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Our own checkpoint -> its raw dict (format, version, G_kwargs, G_ema, and G/D/training if saved)."""
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except Exception as e:  # torch raises many types for damaged zips (RuntimeError, OSError, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {msg[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a {FORMAT} checkpoint")
    if data.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer version (format {data['version']} > {VERSION})")
    for key in ("G_kwargs", "G_ema"):
        if key not in data:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
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
    return p


def sniff_format(path: str | os.PathLike) -> str:
    """'studio' (torch zip), 'pickle' (original network pickle) or raise CheckpointError."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "studio"
    if head[:1] == b"\x80":
        return "pickle"
    raise CheckpointError(f"{path} is neither a network pickle nor a {FORMAT} checkpoint"
                          + (" (empty file)" if not head else ""))


def build_generator(kwargs: dict, state_dict: dict[str, torch.Tensor], rendering_kwargs: dict | None = None,
                    neural_rendering_resolution: int | None = None, source: str = "checkpoint"
                    ) -> TriPlaneGenerator:
    """Construct a TriPlaneGenerator from constructor kwargs and load weights with clear key errors."""
    kwargs = {k: v for k, v in kwargs.items() if k != "class_name"}
    try:
        G = TriPlaneGenerator(**kwargs)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{source}: cannot build the generator from its kwargs ({e})") from None
    if "dataset_label_std" in state_dict:  # registered by the original trainer on every trained G (ref §1.1)
        G.register_buffer("dataset_label_std", state_dict["dataset_label_std"].clone())
    own = G.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weights (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{source}: weights do not match the generator: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: weight {k} has shape {tuple(state_dict[k].shape)}, "
                                  f"expected {tuple(v.shape)}")
    G.load_state_dict(state_dict)
    if rendering_kwargs:
        G.rendering_kwargs = rendering_kwargs
    if neural_rendering_resolution:
        G.neural_rendering_resolution = int(neural_rendering_resolution)
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
