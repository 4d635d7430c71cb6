"""Still images of a generator: seed -> ws, render modes -> uint8 frames, per-view PNGs and contact sheets.

Frames are numpy uint8 [H,W,3]; conversion, grids and files are in `core.imaging`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.imaging import contact_sheet, depth_to_uint8, resize, save_png, to_uint8
from core.progress import Progress, report

MODES: tuple[str, ...] = ("image", "image_raw", "image_depth")


def parse_modes(text: str | Sequence[str]) -> list[str]:
    """'image,image_depth' (or a list) -> validated list of render modes, in order, without repeats."""
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in MODES]
    if bad or not names:
        raise ValueError(f"unknown render mode {', '.join(bad) or repr(text)} (choose from {', '.join(MODES)})")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------------
# Rendering

def seed_ws(G, seed: int, psi: float = 0.7, cutoff: int | None = None, fov_deg: float | None = None,
            cond_yaw: float = 0.0, cond_pitch: float = 0.0) -> torch.Tensor:
    """The original tools' latent for a seed: z from RandomState(seed), mapped with the frontal
    conditioning camera (EG3D ref §4.4) -> ws [1,num_ws,w_dim] on G's device."""
    from core.cameras import frontal_label
    from core.latents import z_from_seed
    dev = next(G.parameters()).device
    c = frontal_label(G.options, fov_deg, dev, yaw=cond_yaw, pitch=cond_pitch)
    with torch.no_grad():
        return G.mapping(z_from_seed(seed, G.z_dim, dev), c, truncation_psi=psi, truncation_cutoff=cutoff)


def render_modes(G, planes: torch.Tensor, ws: torch.Tensor, label: torch.Tensor, modes: Iterable[str],
                 neural_resolution: int | None = None, depth_colormap: bool = False, depth_mask: bool = True
                 ) -> list[dict[str, np.ndarray]]:
    """Render planes [N,...] (ws [N,...]) from label [N,25] or [1,25] -> per item {mode: uint8 [H,W,3]}.

    Super-resolution runs only when 'image' is asked for. `neural_resolution` overrides the model's
    neural rendering resolution for this call only. `depth_mask`: depth images draw pixels of opacity
    below 0.5 as background (`depth_to_uint8`).
    """
    modes = parse_modes(list(modes))
    n = planes.shape[0]
    label = label.to(planes.device).expand(n, -1) if label.shape[0] == 1 else label.to(planes.device)
    with torch.no_grad():
        out = G.render_planes(planes, ws, label, neural_rendering_resolution=neural_resolution,
                              superresolution="image" in modes)
    frames = []
    for i in range(n):
        item = {}
        for m in modes:
            opacity = out["image_opacity"][i] if depth_mask else None
            item[m] = (depth_to_uint8(out["image_depth"][i], depth_colormap, opacity) if m == "image_depth"
                       else to_uint8(out[m][i]))
        frames.append(item)
    return frames


@dataclass(frozen=True)
class View:
    """A rendering camera as offsets from frontal (radians): gen_samples' LookAt camera on a sphere of
    avg_camera_radius around the origin, looking at avg_camera_pivot; pitch > 0 is lower (original)."""
    yaw: float = 0.0
    pitch: float = 0.0

    @property
    def name(self) -> str:
        return f"yaw{math.degrees(self.yaw):+.0f}_pitch{math.degrees(self.pitch):+.0f}"


def yaw_sweep(count: int, yaw_range: float, pitch: float = 0.0) -> list[View]:
    """`count` views with yaw evenly spaced over [-yaw_range, +yaw_range] (radians); one view = frontal."""
    if count < 1:
        raise ValueError(f"number of views must be at least 1, got {count}")
    if count == 1:
        return [View(0.0, pitch)]
    return [View(float(y), pitch) for y in np.linspace(-yaw_range, yaw_range, count)]


def export_stills(G, seeds: Sequence[int], views: Sequence[View], out_dir: str | os.PathLike,
                  modes: Sequence[str] = ("image",), psi: float = 0.7, cutoff: int | None = None,
                  fov_deg: float | None = None, neural_resolution: int | None = None, sheet: bool = True,
                  depth_colormap: bool = False, progress: Progress | None = None,
                  ws: torch.Tensor | None = None, depth_mask: bool = True) -> list[Path]:
    """PNG per seed x view x mode (seed0003_yaw+20_pitch+0_image.png) and, with `sheet`, one contact
    sheet per mode (rows = seeds, columns = views). Planes are computed once per seed. -> paths.

    `ws` [1,num_ws,w_dim] (e.g. an inverted latent) replaces the seeds: files latent_yaw+20_....png.
    `depth_mask`: depth PNGs draw the background (opacity < 0.5) as far (`depth_to_uint8`)."""
    from core.cameras import frontal_label
    modes = parse_modes(list(modes))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tiles: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    dev = next(G.parameters()).device
    # (file name, caption, seed) per row; the latent's row has no seed
    rows = [("latent", "latent", None)] if ws is not None else [(f"seed{s:04d}", f"seed {s}", s) for s in seeds]
    total = len(rows) * len(views)
    for si, (name, caption, seed) in enumerate(rows):
        row_ws = ws.to(dev) if seed is None else seed_ws(G, seed, psi, cutoff, fov_deg)
        with torch.no_grad():
            planes = G.planes(row_ws)
        for vi, view in enumerate(views):
            report(progress, si * len(views) + vi, total, f"{caption} {view.name}")
            label = frontal_label(G.options, fov_deg, dev, yaw=view.yaw, pitch=view.pitch)
            frames = render_modes(G, planes, row_ws, label, modes, neural_resolution, depth_colormap, depth_mask)[0]
            for m, frame in frames.items():
                written.append(save_png(out_dir / f"{name}_{view.name}_{m}.png", frame))
                tiles[m].append(frame)
    if sheet:
        for m, frames in tiles.items():
            size = max(f.shape[0] for f in frames)
            labels = [f"{caption} {v.name}" for _, caption, _ in rows for v in views]
            written.append(save_png(out_dir / f"grid_{m}.png",
                                    contact_sheet([resize(f, size) for f in frames], len(views), labels)))
    report(progress, total, total, "done")
    return written
