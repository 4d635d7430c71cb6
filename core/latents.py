"""Latent codes: seed -> z as the original tools draw it, seed lists, inversion's inputs (target images,
camera labels) and the one latent file format, latent.npz (ws, camera, settings, noise maps), that
`invert`, the studio, and `render`/`video`/`mesh --latent` share."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.errors import StudioError
from core.fileio import atomic_path


def z_from_seed(seed: int, z_dim: int = 512, device: torch.device | str | None = None) -> torch.Tensor:
    """The original scripts' z for a seed: RandomState(seed).randn(1, z_dim) as float32, [1, z_dim]."""
    z = np.random.RandomState(seed).randn(1, z_dim)
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)


MAX_SEEDS = 10_000
"""Seeds in one seed list (each is at least one rendering)."""
MAX_SEED = 2 ** 32 - 1
"""The original tools draw z with numpy's RandomState(seed), which takes seeds below 2**32."""


def parse_seeds(text: str) -> list[int]:
    """'0,3-5,9' -> [0, 3, 4, 5, 9]: at most MAX_SEEDS seeds, each at most MAX_SEED, checked before any
    range is expanded. Raises ValueError naming the bad part."""
    ranges: list[range] = []
    count = 0
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d{1,30})(?:-(\d{1,30}))?", part)
        if not m:
            raise ValueError(f"bad seed range {part[:40]!r} (expected seeds like 0,3-5)")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi > MAX_SEED:
            raise ValueError(f"seeds must be at most {MAX_SEED}, got {hi}")
        if hi < lo:
            raise ValueError(f"bad seed range {part!r} (the end is before the start)")
        ranges.append(range(lo, hi + 1))
        count += hi - lo + 1
        if count > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS:,} seeds at a time")
    if not ranges:
        raise ValueError(f"no seeds in {text[:40]!r}")
    return [s for r in ranges for s in r]


# ---------------------------------------------------------------------------------------------------
# Inversion inputs and results: target images, camera labels, latent files

MIN_IMAGE_SIZE = 32
"""Shorter side (pixels) below which an input image is refused: too little to invert."""


def frame_object(rgb: np.ndarray, fill: float, background: tuple[int, int, int], tolerance: int = 24
                 ) -> tuple[np.ndarray, str]:
    """Photo uint8 [H,W,3] -> square uint8 image with the object centred, its larger side `fill` of the
    frame, on the model's background; and what was done.

    The photo's own background is taken to be the median colour of its border; pixels within
    `tolerance` of it (max over channels) become `background` (a plain backdrop, not a cluttered
    scene, is what this handles). The object is the bounding box of the other pixels.
    """
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(int)
    back_seen = np.median(border, axis=0)
    fg = np.abs(rgb.astype(int) - back_seen).max(axis=-1) > tolerance
    if not fg.any():
        return rgb, "no object found against the border's colour: framing left as it was"
    out = np.where(fg[..., None], rgb, np.array(background, dtype=np.uint8))
    ys, xs = np.nonzero(fg)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    side = max(int(round(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / fill)), 1)
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[:] = background
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, rgb.shape[0]), min(left + side, rgb.shape[1])
    square[y0 - top:y1 - top, x0 - left:x1 - left] = out[y0:y1, x0:x1]
    return square, (f"background (border colour {tuple(int(v) for v in back_seen)}) set to {tuple(background)}, "
                    f"object centred and scaled to {fill:.2f} of the frame")


def prepare_image(path: str | os.PathLike, resolution: int, white_back: bool, frame: float | None = None
                  ) -> tuple[torch.Tensor, str]:
    """Any image PIL reads -> target [1,3,R,R] in [-1,1] and a sentence saying what was done.

    Transparency is composited on the model's background (white with white_back, else black), then
    the largest centred square is cropped and resized to R (Lanczos; antialiased when shrinking).
    With `frame`, instead: the photo's plain background becomes the model's and the object is centred
    and scaled so that its larger side fills that fraction of the frame (`frame_object`).
    """
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.load()
            size, mode = img.size, img.mode
            has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
            rgba = img.convert("RGBA")
    except FileNotFoundError:
        raise StudioError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise StudioError(f"{path} is not a readable image ({type(e).__name__})") from None
    w, h = size
    if min(w, h) < MIN_IMAGE_SIZE:
        raise StudioError(f"{path}: image is {w}x{h}, too small to invert (need at least "
                          f"{MIN_IMAGE_SIZE} pixels on the shorter side)")
    background = (255, 255, 255, 255) if white_back else (0, 0, 0, 255)
    rgb = Image.alpha_composite(Image.new("RGBA", size, background), rgba).convert("RGB")
    framed = ""
    if frame is not None:
        square_px, framed = frame_object(np.asarray(rgb), frame, background[:3])
        rgb = Image.fromarray(square_px)
        w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    if side != resolution:
        square = square.resize((resolution, resolution), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(square, dtype=np.float32).copy()).permute(2, 0, 1)[None]
    steps = [f"read {size[0]}x{size[1]} {mode}"]
    if has_alpha:
        steps.append(f"composited on {'white' if white_back else 'black'}")
    if framed:
        steps.append(framed)
    if w != h:
        steps.append(f"centre-cropped to {side}x{side}")
    if side != resolution:
        steps.append(f"resized to {resolution}x{resolution} (Lanczos)")
    return x / 127.5 - 1, ", ".join(steps)


def read_camera(spec: str) -> torch.Tensor:
    """A 25-number camera label [25] from a JSON list file, a .npy file, or `dataset.json:FILENAME`
    (that image's label in an EG3D dataset.json: {"labels": [[filename, [25 numbers]], ...]})."""
    import json
    path, _, name = spec.partition(".json:") if ".json:" in spec else (spec, "", "")
    if name:
        path += ".json"
    try:
        if path.lower().endswith(".npy"):
            value = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as f:
                value = json.load(f)
    except FileNotFoundError:
        raise StudioError(f"--camera {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise StudioError(f"--camera {path}: unreadable ({type(e).__name__}: {str(e)[:120]})") from None
    if name:
        labels = value.get("labels") if isinstance(value, dict) else None
        found = [lab for item, lab in (labels or []) if item == name] if isinstance(labels, list) else []
        if not found:
            raise StudioError(f"--camera {spec}: no label for {name!r} in {path}")
        value = found[0]
    try:
        label = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise StudioError(f"--camera {spec}: expected 25 numbers") from None
    if label.size != 25 or not np.isfinite(label).all():
        raise StudioError(f"--camera {spec}: expected 25 finite numbers, got {label.size} values")
    return torch.from_numpy(label)


@dataclass
class SavedLatent:
    """A latent as saved to latent.npz, by `main.py invert` or the studio: ws [1,num_ws,w_dim], the camera
    label [25] it was fitted from or seen from (None in studio files written before the camera was saved),
    settings (the inversion's, or the studio's Latent panel fields) and optimised noise maps
    {buffer name: [H,W]} (empty when noise was not optimised: the generator's own maps apply)."""
    ws: torch.Tensor
    camera: torch.Tensor | None
    settings: dict = field(default_factory=dict)
    noise: dict[str, torch.Tensor] = field(default_factory=dict)


_NOISE_PREFIX = "noise:"


def save_latent(path: str | os.PathLike, latent: SavedLatent) -> Path:
    """latent.npz: ws float32 [1,num_ws,w_dim], camera float32 [25] (when known), settings (a JSON string) and one
    `noise:<buffer name>` array per optimised noise map. Loads with np.load(allow_pickle=False)."""
    import json
    arrays = {"ws": latent.ws.detach().cpu().numpy().astype(np.float32),
              "settings": np.array(json.dumps(latent.settings))}
    if latent.camera is not None:
        arrays["camera"] = latent.camera.detach().cpu().reshape(25).numpy().astype(np.float32)
    arrays.update({_NOISE_PREFIX + k: v.detach().cpu().numpy().astype(np.float32) for k, v in latent.noise.items()})
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_latent(path: str | os.PathLike) -> SavedLatent:
    """Read a latent.npz written by `save_latent`, or by the studio before it saved the camera (ws and
    settings only). One-line StudioError when it is not one."""
    import json
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise StudioError(f"latent file {path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise StudioError(f"{path} is not a latent .npz file ({type(e).__name__})") from None
    ws, camera = arrays.get("ws"), arrays.get("camera")
    if ws is None or ws.ndim != 3 or ws.shape[0] != 1 or (camera is not None and camera.size != 25):
        raise StudioError(f"latent file {path}: expected ws [1,num_ws,w_dim] and a camera of 25 numbers")
    if not (np.isfinite(ws).all() and (camera is None or np.isfinite(camera).all())):
        raise StudioError(f"latent file {path}: ws or camera holds NaN or inf")
    try:
        settings = json.loads(str(arrays["settings"])) if "settings" in arrays else {}
    except ValueError:
        settings = {}
    noise = {k[len(_NOISE_PREFIX):]: torch.from_numpy(v.astype(np.float32))
             for k, v in arrays.items() if k.startswith(_NOISE_PREFIX)}
    return SavedLatent(torch.from_numpy(ws.astype(np.float32)),
                       None if camera is None else torch.from_numpy(camera.astype(np.float32)).reshape(25),
                       settings if isinstance(settings, dict) else {}, noise)


def apply_latent(G, latent: SavedLatent) -> torch.Tensor:
    """Check the latent fits G, copy its noise maps into G's noise buffers -> ws on G's device."""
    if latent.ws.shape[1:] != (G.num_ws, G.w_dim):
        raise StudioError(f"the latent has ws of shape {list(latent.ws.shape)} but this network needs "
                          f"[1, {G.num_ws}, {G.w_dim}]: was it inverted with another network?")
    buffers = dict(G.named_buffers())
    for name, value in latent.noise.items():
        if name not in buffers or buffers[name].shape != value.shape:
            raise StudioError(f"the latent's noise map {name} does not fit this network")
        buffers[name].copy_(value)
    return latent.ws.to(next(G.parameters()).device)
