"""Still images of a generator: seed -> ws, render modes -> uint8 frames, colour maps, contact sheets, PNGs.

Frames are numpy uint8 [H,W,3] (HWC, what PIL, imageio and GL uploads take). Images come out of the
generator in [-1,1] and are converted as the original tools do: clamp(x * 127.5 + 128).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.fileio import atomic_path
from core.progress import Progress

Mode = Literal["image", "image_raw", "image_depth"]
MODES: tuple[str, ...] = ("image", "image_raw", "image_depth")

# Anchor colours of the depth colour map (near -> far: warm -> cool), linearly interpolated.
_DEPTH_ANCHORS = np.array([[252, 255, 164], [249, 142, 9], [188, 55, 84], [87, 16, 110], [0, 0, 4]],
                          dtype=np.float32)


def parse_modes(text: str | Sequence[str]) -> list[str]:
    """'image,image_depth' (or a list) -> validated list of render modes, in order, without repeats."""
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in names if m not in MODES]
    if bad or not names:
        raise ValueError(f"unknown render mode {', '.join(bad) or repr(text)} (choose from {', '.join(MODES)})")
    return list(dict.fromkeys(names))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Image [3,H,W] or [1,3,H,W] in [-1,1] -> uint8 [H,W,3] (the original's clamp(x * 127.5 + 128))."""
    if image.ndim == 4:
        image = image[0]
    x = (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def depth_to_uint8(depth: torch.Tensor, colormap: bool = False) -> np.ndarray:
    """Depth [1,H,W] or [1,1,H,W] -> uint8 [H,W,3], min-max normalised per image, near = bright.

    Grey as in the original video tool, or with `colormap` a warm-to-cool ramp (near = light yellow).
    """
    d = depth.detach().float().reshape(depth.shape[-2], depth.shape[-1]).cpu().numpy()
    lo, hi = float(d.min()), float(d.max())
    t = (hi - d) / (hi - lo) if hi > lo else np.ones_like(d)  # 1 = nearest
    if not colormap:
        g = (t * 255 + 0.5).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    pos = (1 - t) * (len(_DEPTH_ANCHORS) - 1)
    i = np.clip(np.floor(pos).astype(int), 0, len(_DEPTH_ANCHORS) - 2)
    f = (pos - i)[..., None]
    rgb = _DEPTH_ANCHORS[i] * (1 - f) + _DEPTH_ANCHORS[i + 1] * f
    return (rgb + 0.5).astype(np.uint8)


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H,W,3] -> [size,size,3] (bilinear; a no-op when already that size)."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    t = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def grid(frames: Sequence[np.ndarray], cols: int, pad: int = 0, background: int = 0) -> np.ndarray:
    """Tile equally sized uint8 [H,W,3] frames row-major into `cols` columns (missing cells = background)."""
    if not frames:
        raise ValueError("no frames to tile")
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        raise ValueError("all frames of a grid must have the same size")
    cols = max(1, min(cols, len(frames)))
    rows = math.ceil(len(frames) / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), background, np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = f
    return out


def contact_sheet(frames: Sequence[np.ndarray], cols: int, labels: Sequence[str] | None = None,
                  pad: int = 4) -> np.ndarray:
    """A grid on a white background with an optional small caption under each frame."""
    if labels is None:
        return grid(frames, cols, pad, 255)
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    caption = 14
    captioned = []
    for f, text in zip(frames, labels):
        img = Image.new("RGB", (f.shape[1], f.shape[0] + caption), (255, 255, 255))
        img.paste(Image.fromarray(f), (0, 0))
        ImageDraw.Draw(img).text((2, f.shape[0] + 1), text, fill=(0, 0, 0), font=font)
        captioned.append(np.asarray(img))
    return grid(captioned, cols, pad, 255)


def save_png(frame: np.ndarray, path: str | os.PathLike) -> Path:
    """uint8 [H,W,3] -> PNG, written atomically."""
    from PIL import Image
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")
    return path


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
                 neural_resolution: int | None = None, depth_colormap: bool = False
                 ) -> list[dict[str, np.ndarray]]:
    """Render planes [N,...] (ws [N,...]) from label [N,25] or [1,25] -> per item {mode: uint8 [H,W,3]}.

    Super-resolution runs only when 'image' is asked for. `neural_resolution` overrides the model's
    neural rendering resolution for this call only.
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
            item[m] = (depth_to_uint8(out["image_depth"][i], depth_colormap) if m == "image_depth"
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
                  ws: torch.Tensor | None = None) -> list[Path]:
    """PNG per seed x view x mode (seed0003_yaw+20_pitch+0_image.png) and, with `sheet`, one contact
    sheet per mode (rows = seeds, columns = views). Planes are computed once per seed. -> paths.

    `ws` [1,num_ws,w_dim] (e.g. an inverted latent) replaces the seeds: files latent_yaw+20_....png."""
    from core.cameras import frontal_label
    modes = parse_modes(list(modes))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opts = G.options
    written: list[Path] = []
    tiles: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    total = (1 if ws is not None else len(seeds)) * len(views)
    dev = next(G.parameters()).device
    fixed_ws = ws
    names = ["latent"] if fixed_ws is not None else [f"seed{seed:04d}" for seed in seeds]
    captions = ["latent"] if fixed_ws is not None else [f"seed {seed}" for seed in seeds]
    for si in range(len(names)):
        ws = fixed_ws.to(dev) if fixed_ws is not None else seed_ws(G, seeds[si], psi, cutoff, fov_deg)
        with torch.no_grad():
            planes = G.planes(ws)
        for vi, view in enumerate(views):
            if progress is not None:
                progress.update(si * len(views) + vi, total, f"{captions[si]} {view.name}")
            label = frontal_label(opts, fov_deg, dev, yaw=view.yaw, pitch=view.pitch)
            frames = render_modes(G, planes, ws, label, modes, neural_resolution, depth_colormap)[0]
            for m, frame in frames.items():
                written.append(save_png(frame, out_dir / f"{names[si]}_{view.name}_{m}.png"))
                tiles[m].append(frame)
    if sheet:
        for m, frames in tiles.items():
            size = max(f.shape[0] for f in frames)
            labels = [f"{c} {v.name}" for c in captions for v in views]
            written.append(save_png(contact_sheet([resize(f, size) for f in frames], len(views), labels),
                                    out_dir / f"grid_{m}.png"))
    if progress is not None:
        progress.update(total, total, "done")
    return written
