"""Orbit and latent-interpolation videos: camera paths, cyclic cubic interpolation in W, H.264 MP4 writer.

Replaces the original gen_videos tool (EG3D ref §7.2): the same orbit (yaw ±0.35, pitch ±0.25 around the
pivot, one loop per video), a full 360° turn, and interpolation between seeds with the camera orbiting,
for a grid of cells. Planes are computed once per cell when its latent is fixed (orbit / 360) and per
frame only while the latent moves. Rendering is deterministic (no depth jitter), so frames do not flicker.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from core.camera_path import CameraPath
from core.engine import Latent, RenderEngine, RenderRequest
from core.errors import StudioError
from core.fileio import atomic_path
from core.images import parse_modes, render_modes, seed_ws
from core.imaging import Mp4Writer, depth_to_uint8, grid, grid_shape, to_uint8
from core.imaging import parse_grid as parse_grid  # re-exported: the video command parses --grid with it
from core.progress import Progress, report

PathKind = Literal["orbit", "360", "interp"]
PATHS: tuple[str, ...] = ("orbit", "360", "interp")


@dataclass(frozen=True)
class VideoOptions:
    path: PathKind = "orbit"
    """'orbit': the original's yaw/pitch loop; '360': a full turn; 'interp': seeds interpolated in W."""
    frames: int = 240
    fps: float = 30.0
    mode: str = "image"
    """image (super-resolved), image_raw (neural rendering) or image_depth (normalised, near = bright)."""
    depth_mask: bool = True
    """image_depth: pixels of opacity below 0.5 are background, drawn far and left out of the range."""
    grid: tuple[int, int] | None = None
    """(columns, rows) of cells; None: one cell per seed, laid out near-square (interp: 1x1)."""
    psi: float = 0.7
    cutoff: int | None = None
    fov_deg: float | None = None
    """Camera FOV in degrees (None: the checkpoint's default)."""
    neural_resolution: int | None = None
    """Neural rendering resolution override (None: the model's own)."""
    pitch_360: float = -0.2
    """Pitch offset (radians, > 0 is lower) of the 360° path."""
    bitrate: str = "10M"


def camera_path(kind: PathKind, frames: int, options, fov_deg: float | None = None, pitch_360: float = -0.2,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Camera labels [frames, 25] for the path around the model's avg camera pivot and radius."""
    from core.cameras import camera_label, fov_to_intrinsics, orbit_360, video_orbit
    if frames < 1:
        raise ValueError(f"number of frames must be at least 1, got {frames}")
    radius, pivot = options.avg_camera_radius, tuple(options.avg_camera_pivot)
    if kind in ("orbit", "interp"):
        poses = [video_orbit(f, frames, radius=radius, pivot=pivot, device=device) for f in range(frames)]
    elif kind == "360":
        poses = [orbit_360(f, frames, pitch=pitch_360, radius=radius, pivot=pivot, device=device)
                 for f in range(frames)]
    else:
        raise ValueError(f"unknown camera path {kind!r} (choose from {', '.join(PATHS)})")
    return camera_label(torch.cat(poses), fov_to_intrinsics(fov_deg or options.avg_camera_fov, device))


def cyclic_cubic(keys: torch.Tensor, t: float) -> torch.Tensor:
    """Catmull-Rom interpolation through keys [K,...] closed into a loop; t in [0,1) -> [...].

    t = 0 is keys[0]; each key gets an equal share of the loop; K = 1 gives the key itself.
    """
    k = keys.shape[0]
    if k == 1:
        return keys[0]
    x = (t % 1.0) * k
    i = int(math.floor(x))
    s = x - i
    p0, p1, p2, p3 = (keys[(i + d) % k] for d in (-1, 0, 1, 2))
    return 0.5 * ((2 * p1) + (-p0 + p2) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s ** 2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * s ** 3)


def _cell_keys(seeds: Sequence[int], opts: VideoOptions) -> tuple[list[list[int]], tuple[int, int]]:
    """Seeds -> per-cell keyframe seeds and the (columns, rows) layout."""
    if opts.path == "interp":
        cols, rows = opts.grid or (1, 1)
        cells = cols * rows
        if len(seeds) % cells:
            raise ValueError(f"interpolation needs a multiple of {cells} seeds for a {cols}x{rows} grid "
                             f"(got {len(seeds)})")
        per = len(seeds) // cells
        return [list(seeds[c * per:(c + 1) * per]) for c in range(cells)], (cols, rows)
    cols, rows = grid_shape(len(seeds), opts.grid)
    if len(seeds) > cols * rows:
        raise ValueError(f"{len(seeds)} seeds do not fit a {cols}x{rows} grid")
    return [[s] for s in seeds], (cols, rows)


def video_frames(G, seeds: Sequence[int], labels: torch.Tensor, options: VideoOptions = VideoOptions(),
                 latent_ws: Callable[[int], torch.Tensor] | None = None) -> Iterator[np.ndarray]:
    """Yield the video's frames, uint8 [H,W,3], one per camera label in labels [F,25].

    ws are mapped once per seed (by `latent_ws(seed)` when given, e.g. the studio's edited latent;
    else as the original tools do); planes once per cell when its latent is fixed, per frame otherwise.
    """
    opts = options
    mode = parse_modes([opts.mode])[0]
    if not seeds:
        raise ValueError("no seeds given")
    keys, (cols, rows) = _cell_keys(seeds, opts)
    latent_ws = latent_ws or (lambda seed: seed_ws(G, seed, opts.psi, opts.cutoff, opts.fov_deg))
    key_ws = [torch.cat([latent_ws(s) for s in cell]) for cell in keys]
    moving = any(len(k) > 1 for k in key_ws)
    with torch.no_grad():
        fixed_ws = torch.cat([k[0:1] for k in key_ws])
        fixed_planes = None if moving else G.planes(fixed_ws)
    frames = labels.shape[0]
    for f in range(frames):
        if moving:
            ws = torch.stack([cyclic_cubic(k, f / frames) for k in key_ws])
            with torch.no_grad():
                planes = G.planes(ws)
        else:
            ws, planes = fixed_ws, fixed_planes
        tiles = [d[mode] for d in render_modes(G, planes, ws, labels[f:f + 1], [mode], opts.neural_resolution,
                                               depth_mask=opts.depth_mask)]
        tiles += [np.zeros_like(tiles[0])] * (cols * rows - len(tiles))
        yield grid(tiles, cols)


def render_video(G, seeds: Sequence[int], out: str | os.PathLike, options: VideoOptions = VideoOptions(),
                 progress: Progress | None = None, latent_ws: Callable[[int], torch.Tensor] | None = None,
                 labels: torch.Tensor | None = None, frames: Iterable[np.ndarray] | None = None
                 ) -> tuple[Path, Path]:
    """Render the video to `out` (.mp4, H.264) and its camera labels to <out stem>.cameras.npy.

    `latent_ws(seed)` -> ws overrides how seeds become latents (see `video_frames`). `labels` [F,25]
    replace the cameras of options.path, and `frames` (one per label) the seeds' frames
    (`render_engine_video` passes both).

    Both files are written through temporary files and appear only when complete (Ctrl-C or
    Cancelled leaves nothing). Returns (video path, cameras path).
    """
    opts = options
    if opts.fps <= 0:
        raise ValueError(f"fps must be positive, got {opts.fps}")
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"video file {out} must end in .mp4")
    cam_path = out.with_name(out.stem + ".cameras.npy")
    if labels is None:
        labels = camera_path(opts.path, opts.frames, G.options, opts.fov_deg, opts.pitch_360,
                             next(G.parameters()).device)
    if frames is None:
        frames = video_frames(G, seeds, labels, opts, latent_ws)
    report(progress, 0, opts.frames, "first frame")
    with atomic_path(out) as tmp_video, atomic_path(cam_path) as tmp_cams:
        writer = Mp4Writer(tmp_video, fps=opts.fps, bitrate=opts.bitrate)
        try:
            for f, frame in enumerate(frames):
                writer.append(frame)
                report(progress, f + 1, opts.frames, f"frame {f + 1}/{opts.frames}")
        except BaseException:
            with contextlib.suppress(Exception):  # on Ctrl-C ffmpeg may be gone already: keep the original
                writer.close()
            raise
        writer.close()
        with open(tmp_cams, "wb") as fh:
            np.save(fh, labels.cpu().numpy().astype(np.float32))
    return out, cam_path


# ---------------------------------------------------------------------------------------------------
# Videos of an engine state (the studio's export and `main.py video --path FILE.json`)

def engine_frames(engine: RenderEngine, request: RenderRequest, labels: torch.Tensor, mode: str = "image",
                  latents: Sequence[Latent] | None = None, cols: int | None = None,
                  depth_mask: bool = True) -> Iterator[np.ndarray]:
    """Yield uint8 [H,W,3] frames, one per camera label in labels [F,25]: `request` rendered by the
    engine from that camera, so a frame is exactly what the studio shows for the request (latent
    with its mixing/interpolation/directions/conditioning pose, resolution, depth samples, noise,
    precision). With `latents`, each frame is a grid (`cols` columns) with one cell per latent.
    `depth_mask`: image_depth draws pixels of opacity below 0.5 as background (`depth_to_uint8`).
    """
    mode = parse_modes([mode])[0]
    cells = list(latents) if latents else [request.latent]
    cols = cols or grid_shape(len(cells), None)[0]
    base = dataclasses.replace(request, superresolution=mode == "image")
    for f, label in enumerate(labels):
        camera = tuple(float(x) for x in label.tolist())
        tiles = []
        for latent in cells:
            frame = engine.render(dataclasses.replace(base, latent=latent, camera=camera))
            if frame.error:
                raise StudioError(f"video frame {f}: {frame.error}")
            tiles.append(depth_to_uint8(frame.depth, opacity=frame.opacity if depth_mask else None)
                         if mode == "image_depth"
                         else to_uint8(frame.image if mode == "image" else frame.image_raw))
        tiles += [np.zeros_like(tiles[0])] * (cols * math.ceil(len(cells) / cols) - len(tiles))
        yield grid(tiles, cols)


def render_engine_video(engine: RenderEngine, request: RenderRequest, labels: torch.Tensor,
                        out: str | os.PathLike, options: VideoOptions = VideoOptions(),
                        progress: Progress | None = None, latents: Sequence[Latent] | None = None
                        ) -> tuple[Path, Path]:
    """MP4 of `request` seen from each camera in labels [F,25] (e.g. `CameraPath.labels`), rendered
    through the engine (`engine_frames`), and <out stem>.cameras.npy = labels.

    From `options` only fps, mode, depth_mask, bitrate and grid are used: the request and labels define the rest.
    `latents` (several seeds, `main.py video --path FILE.json`) renders one grid cell per latent.
    Files appear only when complete, as with `render_video`. -> (video path, cameras path)
    """
    if labels.ndim != 2 or labels.shape[1] != 25 or labels.shape[0] < 1:
        raise ValueError(f"camera labels must have shape [frames, 25], got {list(labels.shape)}")
    cells = len(latents) if latents else 1
    cols, rows = grid_shape(cells, options.grid)
    if cells > cols * rows:
        raise ValueError(f"{cells} seeds do not fit a {cols}x{rows} grid")
    opts = dataclasses.replace(options, frames=labels.shape[0])
    frames = engine_frames(engine, request, labels, options.mode, latents, cols, options.depth_mask)
    return render_video(engine.G, [], out, opts, progress, labels=labels, frames=frames)


def render_camera_path_video(G, seeds: Sequence[int], path: CameraPath, out: str | os.PathLike,
                             options: VideoOptions = VideoOptions(), progress: Progress | None = None
                             ) -> tuple[Path, Path]:
    """`main.py video --path FILE.json`: each seed (options.psi, cutoff) seen along the keyframed
    camera path, options.frames frames spread over it, rendered through the engine as the studio does."""
    engine = RenderEngine(G, next(G.parameters()).device, planes_cache=len(seeds) + 1)
    latents = [Latent(seed=s, psi=options.psi, cutoff=options.cutoff) for s in seeds]
    if not latents:
        raise ValueError("no seeds given")
    request = RenderRequest(latent=latents[0], resolution=options.neural_resolution)
    labels = path.labels(options.frames, engine.device)
    return render_engine_video(engine, request, labels, out, options, progress, latents)
