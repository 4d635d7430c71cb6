"""The GL-free handlers of the engine actions: the one implementation of each, run on a job thread by
the studio's session (app.session) and by the server (remote.jobs), through the engine and its lock.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.actions import VIDEO_PATHS, Action, ComputePCA, ExportMesh, ExportVideo, InspectPlanes, SaveLatent
from core.camera_path import orbit_labels
from core.checkpoint import save_checkpoint
from core.engine import RenderEngine
from core.latents import SavedLatent
from core.latents import save_latent as write_latent
from core.mesh import extract_mesh, write_mesh
from core.planes import plane_images
from core.progress import Progress, report
from core.video import VideoOptions, engine_frames, render_engine_video, render_video
from training.inversion import InversionResult


def export_mesh(action: ExportMesh, engine: RenderEngine, progress: Progress) -> str:
    if action.path.suffix.lstrip(".").lower() not in ("ply", "obj", "glb"):
        raise ValueError(f"mesh file {action.path} must end in .ply, .obj or .glb")
    with engine.lock:
        planes, ws = engine.planes(action.latent), engine.ws(action.latent)
        mesh = extract_mesh(engine.G, planes, ws, action.options, progress)
    if len(mesh.faces) == 0:
        raise ValueError(f"no surface at level {action.options.level}: try a lower iso level")
    report(progress, 0, 1, f"writing {action.path.name}")   # the last point where Cancel leaves no file
    return f"wrote {write_mesh(mesh, action.path)}"


def video_labels(action: ExportVideo) -> torch.Tensor:
    """Camera labels [frames, 25] of a video's path."""
    if action.kind == "keyframes":
        if action.keyframes is None:
            raise ValueError("the camera path has no keyframes: add views in the Camera path panel")
        return action.keyframes.labels(action.frames)
    if action.kind == "interp":
        return action.camera.label().expand(action.frames, -1).contiguous()
    if action.kind not in VIDEO_PATHS:
        raise ValueError(f"unknown video path {action.kind!r} (choose from {', '.join(VIDEO_PATHS)})")
    return orbit_labels(action.camera, action.kind, action.frames)


def export_video(action: ExportVideo, engine: RenderEngine, progress: Progress) -> str:
    if not 1 <= action.frames <= 100_000 or not 0 < action.fps <= 240:
        raise ValueError(f"video needs 1..100000 frames and 0..240 fps, got {action.frames}, {action.fps:g}")
    labels = video_labels(action)
    options = VideoOptions(frames=action.frames, fps=float(action.fps), mode=action.mode,
                           depth_mask=action.depth_mask)
    if action.kind != "interp":
        out, _ = render_engine_video(engine, action.request, labels, action.path, options, progress)
        return f"wrote {out}"

    def frames():
        for f in range(action.frames):
            t = f / max(action.frames - 1, 1)
            moving = dataclasses.replace(action.request.latent, interp_seed=action.interp_seed, interp_t=t)
            request = dataclasses.replace(action.request, latent=moving)
            yield next(engine_frames(engine, request, labels[f:f + 1], action.mode, depth_mask=action.depth_mask))
    out, _ = render_video(None, [], action.path, options, progress, labels=labels, frames=frames())
    return f"wrote {out}"


def save_latent(action: SaveLatent, engine: RenderEngine, progress: Progress) -> str:
    camera = torch.tensor(action.camera, dtype=torch.float32)
    if camera.numel() != 25:
        raise ValueError(f"a camera label has 25 numbers, got {camera.numel()}")
    write_latent(action.path, SavedLatent(engine.ws(action.latent).cpu(), camera, action.settings))
    return f"saved latent to {action.path}"


def compute_pca(action: ComputePCA, engine: RenderEngine, progress: Progress) -> str:
    progress.update(0, 1, "sampling W")
    engine.w_directions()
    return "principal directions of W ready"


def inspect_planes(action: InspectPlanes, engine: RenderEngine, progress: Progress) -> dict:
    return plane_images(engine.planes(action.latent, action.noise_mode, action.noise_seed), action.channel)


def write_inversion(result: InversionResult, settings: dict, what: str, path: Path) -> str:
    """An inversion's latent.npz (`main.py invert`'s file, noise maps included) or, `what` 'tuned', its
    tuned checkpoint (studio and server)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if what == "tuned":
        save_checkpoint(path, result.G)
        return f"saved tuned checkpoint to {path}"
    write_latent(path, SavedLatent(result.ws, result.camera, settings, result.noise))
    return f"saved latent to {path}"


ENGINE_HANDLERS: dict[type[Action], Callable[[Any, RenderEngine, Progress], Any]] = {
    ExportMesh: export_mesh, ExportVideo: export_video, SaveLatent: save_latent, ComputePCA: compute_pca,
    InspectPlanes: inspect_planes}
"""Engine action type -> handler(action, engine, progress) -> result (a status line, or plane images)."""


def run_action(action: Action, engine: RenderEngine, progress: Progress) -> Any:
    """Run an engine action by its type's handler."""
    return ENGINE_HANDLERS[type(action)](action, engine, progress)
