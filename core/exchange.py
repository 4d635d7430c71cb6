"""The directory format that the original code (and pivotal tuning) loads without our code.

    DIR/G_ema.pt           a plain state_dict: {name: tensor}, the original's names (EG3D ref §2)
    DIR/init_kwargs.json   {"init_kwargs": {...constructor kwargs, rendering_kwargs included...},
                            "neural_rendering_resolution": N}

so that `G = TriPlaneGenerator(**init_kwargs); G.load_state_dict(torch.load("G_ema.pt"), strict=True);
G.neural_rendering_resolution = N` works in the original code base. The `dataset_label_std` buffer that
the original trainer registers on a trained G is not part of a freshly built G, so it goes into the JSON
(as a list) instead of the state_dict; our loader puts it back.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from core.errors import CheckpointError, StudioError
from core.fileio import atomic_path
from core.generator_build import constructor_kwargs, extensions

WEIGHTS, KWARGS = "G_ema.pt", "init_kwargs.json"


def is_exchange_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / WEIGHTS).is_file() and (p / KWARGS).is_file()


def check_exportable(G, allow_extensions: bool = False) -> dict[str, str]:
    """The project-only settings G uses; a one-line StudioError if any, unless `allow_extensions`."""
    used = extensions(constructor_kwargs(G))
    if used and not allow_extensions:
        names = ", ".join(f"{k} ({why})" for k, why in used.items())
        raise StudioError(f"the original EG3D code cannot load this model: it uses project-only settings: "
                          f"{names}; pass --allow-extensions to write it for this project's loader only")
    return used


def export_original(G, out_dir: str | os.PathLike, allow_extensions: bool = False) -> tuple[Path, Path]:
    """Write G_ema.pt + init_kwargs.json for the original code. -> (weights path, kwargs path).

    A model built with our small-model extensions cannot be built by the original TriPlaneGenerator:
    that is a one-line StudioError unless `allow_extensions` (then only our loader can open it).
    """
    check_exportable(G, allow_extensions)
    kwargs = constructor_kwargs(G)
    out = Path(out_dir)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in G.state_dict().items()}
    meta: dict = {"init_kwargs": kwargs, "neural_rendering_resolution": int(G.neural_rendering_resolution)}
    label_std = state.pop("dataset_label_std", None)
    if label_std is not None:
        meta["dataset_label_std"] = label_std.tolist()
    try:
        text = json.dumps(meta, indent=2)
    except TypeError as e:
        raise StudioError(f"constructor kwargs are not JSON-serialisable ({e})") from None
    with atomic_path(out / WEIGHTS) as tmp_w, atomic_path(out / KWARGS) as tmp_k:
        torch.save(state, tmp_w)
        tmp_k.write_text(text + "\n")
    return out / WEIGHTS, out / KWARGS


def read_exchange_dir(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], int | None]:
    """DIR with G_ema.pt + init_kwargs.json -> (constructor kwargs, state_dict, neural rendering resolution);
    G_ema.pt is read with torch.load(weights_only=True), dataset_label_std put back from the JSON."""
    p = Path(path)
    try:
        meta = json.loads((p / KWARGS).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p / KWARGS}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("init_kwargs"), dict):
        raise CheckpointError(f"{p / KWARGS}: expected an object with an 'init_kwargs' object")
    try:
        with warnings.catch_warnings():  # torch warns about unusual pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(p / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure is a bad file, said in one line
        detail = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines() or [""]
        raise CheckpointError(f"{p / WEIGHTS}: not a plain state_dict that torch.load(weights_only=True) accepts "
                              f"({type(e).__name__}: {detail[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p / WEIGHTS}: expected a dict of tensors (a state_dict)")
    if "dataset_label_std" in meta:
        state["dataset_label_std"] = torch.tensor(meta["dataset_label_std"], dtype=torch.float32)
    nrr = meta.get("neural_rendering_resolution")
    return meta["init_kwargs"], state, nrr if isinstance(nrr, int) else None
