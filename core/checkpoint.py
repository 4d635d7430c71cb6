"""Checkpoints, top layer: the project's own format, and one reader for every format a generator comes in.

Layers, each importing only those below it:
    core.generator_build   checked constructor kwargs + weights -> TriPlaneGenerator
    core.network_pickle    the original release's network pickles (restricted unpickler, nothing executed)
    core.exchange          the original's state_dict layout (G_ema.pt + init_kwargs.json)
    core.checkpoint        our own format; `read_networks` (the one format dispatch) and `load_generator`

Our own format is one `torch.save` dict (loadable with `torch.load(weights_only=True)`), written
atomically, holding the constructor kwargs, rendering kwargs, weights and a sha256 digest of the tensors.
It is read by the restricted unpickler of core/safe_unpickle.py, like the original pickles.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from core.errors import CheckpointError, reading
from core.exchange import is_exchange_dir, read_exchange_dir
from core.fileio import atomic_path
from core.generator_build import build_generator, plain
from core.network_pickle import read_network_pickle
from core.safe_unpickle import check_amplification, named_tensors, open_regular, unpickle_torch_zip
from core.triplane import TriPlaneGenerator

FORMAT = "triplane-studio"
VERSION = 1
CHECKPOINT_SUFFIXES = (".ckpt", ".pkl", ".pt", ".pth")


# ---- our own format -----------------------------------------------------------------------------------
def tensor_digest(data: Any) -> str:
    """sha256 over every tensor's name (its path in the dict), dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    for name, value in named_tensors({k: v for k, v in data.items() if k != "digest"}):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
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
        "G_kwargs": plain(G_ema.init_kwargs),
        "rendering_kwargs": plain(G_ema.rendering_kwargs),
        "neural_rendering_resolution": int(G_ema.neural_rendering_resolution),
        "G_ema": cpu(G_ema),
    }
    if G is not None:
        data["G"] = cpu(G)
    if D is not None:
        data["D_kwargs"] = plain(getattr(D, "init_kwargs", {}))
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
    with reading(path, "checkpoint"):
        with open_regular(path) as f:
            data = unpickle_torch_zip(f, os.fstat(f.fileno()).st_size)
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
        check_amplification(t for _, t in named_tensors(data))
        if "digest" in data and data["digest"] != tensor_digest(data):
            raise CheckpointError(f"{path}: the weights do not match the digest recorded when the file was "
                                  "written (the file is damaged)")
    return data


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A file, or a training run directory (-> its newest snapshot by name); a G_ema.pt + init_kwargs.json
    directory is returned as is."""
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


# ---- one reader for every format ----------------------------------------------------------------------
@dataclass
class NetworkFile:
    """What a checkpoint holds, whatever its format: the generator's constructor kwargs and EMA weights, and
    where the file has them the training generator G, the discriminator D and training records."""
    path: Path
    format: Literal["pickle", "studio", "exchange"]
    """'pickle' (original network pickle), 'studio' (our .ckpt) or 'exchange' (G_ema.pt + init_kwargs.json)."""
    G_kwargs: dict
    G_ema: dict[str, torch.Tensor]
    rendering_kwargs: dict | None = None
    neural_rendering_resolution: int | None = None
    G: dict[str, torch.Tensor] | None = None
    D_kwargs: dict | None = None
    D: dict[str, torch.Tensor] | None = None
    training: dict | None = None
    """Our training snapshots' progress and options (optimizer states included)."""
    training_set_kwargs: dict | None = None
    """The original trainer's dataset settings (pickles)."""

    def generator(self) -> TriPlaneGenerator:
        """The EMA generator, built and checked (core.generator_build), in eval mode on the CPU."""
        return build_generator(self.G_kwargs, self.G_ema, self.rendering_kwargs, self.neural_rendering_resolution,
                               source=str(self.path))


def read_networks(path: str | os.PathLike) -> NetworkFile:
    """Any checkpoint: an original network pickle, our .ckpt, a training run directory (its newest snapshot)
    or a G_ema.pt + init_kwargs.json directory -> its networks, unbuilt. One-line CheckpointError if not."""
    if is_exchange_dir(path):
        kwargs, state, nrr = read_exchange_dir(path)
        return NetworkFile(Path(path), "exchange", kwargs, state, kwargs.get("rendering_kwargs"), nrr)
    path = resolve_checkpoint(path)
    if sniff_format(path) == "pickle":
        data = read_network_pickle(path)
        ema, G, D = data["G_ema"], data.get("G"), data.get("D")
        if ema["class_name"] != "TriPlaneGenerator":
            raise CheckpointError(f"{path}: G_ema is a {ema['class_name']}, not an EG3D TriPlaneGenerator")
        return NetworkFile(path, "pickle", ema["init_kwargs"], ema["state_dict"], ema["rendering_kwargs"],
                           ema["neural_rendering_resolution"], G["state_dict"] if G else None,
                           D["init_kwargs"] if D else None, D["state_dict"] if D else None,
                           training_set_kwargs=data["training_set_kwargs"])
    data = load_checkpoint(path)
    return NetworkFile(path, "studio", data["G_kwargs"], data["G_ema"], data.get("rendering_kwargs"),
                       data.get("neural_rendering_resolution"), data.get("G"), data.get("D_kwargs"), data.get("D"),
                       training=data.get("training"))


def load_generator(path: str | os.PathLike, device: torch.device | str | None = None) -> TriPlaneGenerator:
    """The EMA generator in eval mode from any checkpoint `read_networks` reads."""
    G = read_networks(path).generator()
    return G.to(device) if device is not None else G
