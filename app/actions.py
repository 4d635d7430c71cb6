"""Typed actions: what panels ask the session to do, as values appended to AppState.actions.

Engine actions run one at a time on a job thread (Session owns the queue); every torch call in them
goes through the RenderEngine and its lock. UI actions need the GL context and run on the UI thread
(Studio handles them). Panels never see the engine, the worker or a thread.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from core.cameras import OrbitCamera
from core.engine import Latent, RenderEngine, RenderRequest
from core.progress import Progress


@dataclass(frozen=True)
class Action:
    """Base of all actions; `name` is shown in the status line and the progress bar."""
    @property
    def name(self) -> str:
        return type(self).__name__


# ---- UI-thread actions (GL) ------------------------------------------------------------------------

@dataclass(frozen=True)
class SaveFramePNG(Action):
    """The current view (as the viewport draws it) at size x size pixels."""
    path: str
    size: int


@dataclass(frozen=True)
class SaveWindowPNG(Action):
    path: str


# ---- engine actions (job thread) -------------------------------------------------------------------

@dataclass(frozen=True)
class ExportMesh(Action):
    path: Path
    latent: Latent
    options: object
    """core.mesh.MeshOptions"""

    def run(self, engine: RenderEngine, progress: Progress) -> str:
        from core.mesh import extract_mesh, write_mesh
        if self.path.suffix.lstrip(".").lower() not in ("ply", "obj", "glb"):
            raise ValueError(f"mesh file {self.path} must end in .ply, .obj or .glb")
        with engine.lock:
            planes, ws = engine.planes(self.latent), engine.ws(self.latent)
            mesh = extract_mesh(engine.G, planes, ws, self.options, progress)
        if len(mesh.faces) == 0:
            raise ValueError(f"no surface at level {self.options.level}: try a lower iso level")
        return f"wrote {write_mesh(mesh, self.path)}"


VIDEO_PATHS = ("orbit", "360", "keyframes", "interp")
"""orbit / 360: around the on-screen camera (core.camera_path.orbit_labels); keyframes: the camera
path editor's path; interp: the on-screen camera while the latent moves from the current seed (t = 0)
to the second seed (t = 1)."""


@dataclass(frozen=True)
class ExportVideo(Action):
    """A video of exactly the on-screen request (latent, resolution, samples, noise) along a path."""
    path: Path
    request: RenderRequest
    camera: OrbitCamera
    kind: str = "orbit"
    frames: int = 120
    fps: float = 30.0
    mode: str = "image"
    keyframes: object = None
    """core.camera_path.CameraPath for kind 'keyframes'."""
    interp_seed: int = 1
    depth_mask: bool = True
    """image_depth: background (opacity < 0.5) drawn far, as the Render panel's mask setting."""

    def labels(self) -> torch.Tensor:
        """Camera labels [frames, 25]."""
        from core.camera_path import orbit_labels
        if self.kind == "keyframes":
            if self.keyframes is None:
                raise ValueError("the camera path has no keyframes: add views in the Camera path panel")
            return self.keyframes.labels(self.frames)
        if self.kind == "interp":
            return self.camera.label().expand(self.frames, -1).contiguous()
        if self.kind not in VIDEO_PATHS:
            raise ValueError(f"unknown video path {self.kind!r} (choose from {', '.join(VIDEO_PATHS)})")
        return orbit_labels(self.camera, self.kind, self.frames)

    def run(self, engine: RenderEngine, progress: Progress) -> str:
        from core.video import (
            VideoOptions,
            engine_frames,
            render_engine_video,
            render_video,
        )
        if not 1 <= self.frames <= 100_000 or not 0 < self.fps <= 240:
            raise ValueError(f"video needs 1..100000 frames and 0..240 fps, got {self.frames}, {self.fps:g}")
        labels = self.labels()
        options = VideoOptions(frames=self.frames, fps=float(self.fps), mode=self.mode, depth_mask=self.depth_mask)
        if self.kind != "interp":
            out, _ = render_engine_video(engine, self.request, labels, self.path, options, progress)
            return f"wrote {out}"
        latent = self.request.latent

        def frames():
            for f in range(self.frames):
                t = f / max(self.frames - 1, 1)
                moving = dataclasses.replace(latent, interp_seed=self.interp_seed, interp_t=t)
                request = dataclasses.replace(self.request, latent=moving)
                yield next(engine_frames(engine, request, labels[f:f + 1], self.mode,
                                         depth_mask=self.depth_mask))
        out, _ = render_video(None, [], self.path, options, progress, labels=labels, frames=frames())
        return f"wrote {out}"


@dataclass(frozen=True)
class SaveLatent(Action):
    """The on-screen latent as a latent.npz (core.latents: the file `render`/`video`/`mesh --latent` read)
    with the camera it is seen from."""
    path: Path
    settings: dict
    """LatentState fields to store (app.latent_panel.SAVED_FIELDS)."""
    latent: Latent
    camera: OrbitCamera

    def run(self, engine: RenderEngine, progress: Progress) -> str:
        from core.latents import SavedLatent, save_latent
        save_latent(self.path, SavedLatent(engine.ws(self.latent).cpu(), self.camera.label()[0], self.settings))
        return f"saved latent to {self.path}"


@dataclass(frozen=True)
class ComputePCA(Action):
    """Principal directions of W for the loaded model (then the direction sliders act at once)."""

    def run(self, engine: RenderEngine, progress: Progress) -> str:
        progress.update(0, 1, "sampling W")
        engine.w_directions()
        return "principal directions of W ready"


@dataclass(frozen=True)
class InspectPlanes(Action):
    """Plane images of a latent for the Planes panel; the result lands in AppState.planes as
    (key, result dict or error text). Runs beside the export queue (newest request wins)."""
    key: tuple
    latent: Latent
    channel: int | None
    noise_mode: str = "const"
    noise_seed: int = 0

    def run(self, engine: RenderEngine, progress: Progress) -> dict:
        from core.planes import plane_images
        return plane_images(engine.planes(self.latent, self.noise_mode, self.noise_seed), self.channel)


# ---- training (session thread) ---------------------------------------------------------------------

@dataclass(frozen=True)
class StartTraining(Action):
    spec: object
    """training.runner.TrainSpec"""


@dataclass(frozen=True)
class StopTraining(Action):
    pass


# ---- inversion (session thread: app.inversion) ---------------------------------------------------

INVERT_CAMERAS = ("viewport", "angles", "estimate")
"""viewport: the on-screen orbit camera; angles: yaw/pitch in degrees with `render`'s meaning;
estimate: optimised with the latent from the best of several candidate views."""


@dataclass(frozen=True)
class OpenInvertImage(Action):
    """Prepare an image as the inversion's target (shown in the Invert panel)."""
    path: str


@dataclass(frozen=True)
class StartInversion(Action):
    """Invert `image` into the loaded model on a job thread (one run at a time)."""
    image: str
    options: object
    """training.inversion.InversionOptions"""
    camera: str = "viewport"
    """One of INVERT_CAMERAS."""
    view: OrbitCamera | None = None
    """camera 'viewport': a copy of the on-screen camera (the label fitted, and the view shown after)."""
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0


@dataclass(frozen=True)
class StopInversion(Action):
    """Stop the running inversion; the best result so far is kept and shown."""


@dataclass(frozen=True)
class SaveInversion(Action):
    """Write the last inversion's latent (latent.npz, as `main.py invert`) or its tuned checkpoint."""
    path: Path
    what: str = "latent"
    """'latent' or 'tuned'."""
