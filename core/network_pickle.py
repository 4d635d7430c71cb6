"""The original release's network pickles, read safely (EG3D ref §3.3).

Original pickles embed Python source that the official loader executes. Here the restricted unpickler of
core/safe_unpickle.py resolves only an explicit allow-list of globals; persistent objects and the
original's `training.*` / `torch.nn.modules.*` classes become inert stubs that merely hold their
`__dict__`, from which each network's state_dict is flattened in the original key order. Nothing from the
file is executed or compiled.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from core.errors import CheckpointError, reading
from core.generator_build import plain
from core.safe_unpickle import MAX_DEPTH, MAX_TENSORS, Budget, Stub, check_amplification, unpickle_pickle


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
    with reading(path, "network pickle"):
        return _network_entries(path, unpickle_pickle(path))


def _network_entries(path: str | os.PathLike, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict with G_ema, found {type(data).__name__}")
    out: dict[str, Any] = {"training_set_kwargs": plain(data.get("training_set_kwargs"))}
    for key in ("G_ema", "G", "D"):
        obj = data.get(key)
        if obj is None:
            continue
        if not isinstance(obj, Stub) or not isinstance(obj.state, dict):
            raise CheckpointError(f"{path}: {key} is not a network object")
        st = obj.state
        out[key] = {
            "class_name": obj.class_name.split(".")[-1],
            "init_args": plain(st.get("_init_args", ())),
            "init_kwargs": plain(st.get("_init_kwargs", {})),
            "state_dict": _flatten(obj),
            "rendering_kwargs": plain(st.get("rendering_kwargs")),
            "neural_rendering_resolution": st.get("neural_rendering_resolution"),
        }
    if "G_ema" not in out:
        keys = sorted(str(k)[:40] for k in list(data)[:20])
        raise CheckpointError(f"{path}: no G_ema network in the pickle (keys: {keys})")
    check_amplification(t for key in ("G_ema", "G", "D") if key in out for t in out[key]["state_dict"].values())
    return out
