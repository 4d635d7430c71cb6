"""Typed actions: what panels ask for, as frozen values appended to AppState.actions.

Data only: the Session runs each through one handler table keyed by the action's type (app.session);
the GL-free engine handlers are app.handlers (the server runs the same ones, remote.jobs) and the Studio
registers the GL-side ones (screenshots, frame PNGs, recording). Panels never see the engine, the
worker or a thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.camera_path import CameraPath
from core.cameras import OrbitCamera
from core.engine import Latent, RenderRequest
from core.mesh import MeshOptions
from training.camera_estimate import CameraSearch
from training.inversion import InversionOptions
from training.runner import TrainSpec


@dataclass(frozen=True)
class Action:
    """Base of all actions; `name` is shown in the status line and the progress bar."""
    @property
    def name(self) -> str:
        return type(self).__name__


# ---- the session: models and the job slot --------------------------------------------------------

@dataclass(frozen=True)
class OpenModel(Action):
    """Open a checkpoint (a file, or a run directory's newest snapshot) in the background."""
    path: str
    keep_view: bool = False
    """Keep camera and latent (Reload, hot reload of a newer snapshot); such loads stay out of File > Recent."""


@dataclass(frozen=True)
class CancelJob(Action):
    """Cancel the engine action running on the session's job thread (a panel's Cancel button)."""


# ---- GL (the Studio's handlers, UI thread) ---------------------------------------------------------

@dataclass(frozen=True)
class SaveFramePNG(Action):
    """The current view (as the viewport draws it) at size x size pixels."""
    path: str
    size: int


@dataclass(frozen=True)
class SaveWindowPNG(Action):
    """The whole window as displayed, taken at the end of the frame."""
    path: str


@dataclass(frozen=True)
class SaveViewportPNG(Action):
    """The viewport's pixels as displayed, taken at the end of the frame."""
    path: str


@dataclass(frozen=True)
class StartRecording(Action):
    """Record the viewport to an MP4 at AppState.recording's fps and size."""
    path: str


@dataclass(frozen=True)
class StopRecording(Action):
    """Finish the recording and move the MP4 into place."""


# ---- engine actions (app.handlers, on the session's job thread) -----------------------------------

@dataclass(frozen=True)
class ExportMesh(Action):
    path: Path
    latent: Latent
    options: MeshOptions


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
    keyframes: CameraPath | None = None
    """The camera path for kind 'keyframes'."""
    interp_seed: int = 1
    depth_mask: bool = True
    """image_depth: background (opacity < 0.5) drawn far, as the Render panel's mask setting."""


@dataclass(frozen=True)
class SaveLatent(Action):
    """The on-screen latent as a latent.npz (core.latents: the file `render`/`video`/`mesh --latent` read)
    with the camera it is seen from."""
    path: Path
    settings: dict
    """LatentState fields to store (the Latent panel's SAVED_FIELDS)."""
    latent: Latent
    camera: tuple[float, ...]
    """The view's 25-number camera label."""


@dataclass(frozen=True)
class ComputePCA(Action):
    """Principal directions of W for the loaded model (then the direction sliders act at once)."""


@dataclass(frozen=True)
class InspectPlanes(Action):
    """Plane images of a latent for the Planes panel; the result lands in AppState.planes as
    (key, result dict or error text). Runs beside the export queue (newest request wins)."""
    key: tuple
    latent: Latent
    channel: int | None
    noise_mode: str = "const"
    noise_seed: int = 0


# ---- training (the session) ------------------------------------------------------------------------

@dataclass(frozen=True)
class StartTraining(Action):
    spec: TrainSpec


@dataclass(frozen=True)
class StopTraining(Action):
    pass


# ---- inversion (the session's app.inversion) -------------------------------------------------------

INVERT_CAMERAS = ("viewport", "angles", "estimate")
"""viewport: the on-screen orbit camera; angles: yaw/pitch in degrees with `render`'s meaning;
estimate: training.camera_estimate's view (checked and corrected by hand in the panel, or found by Start)."""


@dataclass(frozen=True)
class OpenInvertImage(Action):
    """Prepare an image as the inversion's target (shown in the Invert panel)."""
    path: str
    frame: float | None = None
    """Re-frame a photo (core.latents.frame_object): its plain backdrop becomes the model's background and
    the object is centred, its larger side this fraction of the frame; None: centre crop only."""


@dataclass(frozen=True)
class StartInversion(Action):
    """Invert `image` into the loaded model on a job thread (one run at a time)."""
    image: str
    options: InversionOptions
    camera: str = "viewport"
    """One of INVERT_CAMERAS."""
    view: OrbitCamera | None = None
    """camera 'viewport': a copy of the on-screen camera (the label fitted, and the view shown after)."""
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    frame: float | None = None
    """As OpenInvertImage.frame."""


@dataclass(frozen=True)
class EstimateInvertCamera(Action):
    """Estimate the camera of `image` (training.camera_estimate) as a job, before inverting it: the panel
    then shows the model at that view next to the target and lets the user correct it by hand."""
    image: str
    frame: float | None = None
    search: CameraSearch | None = None
    """The estimator's settings (None: its defaults)."""


@dataclass(frozen=True)
class CancelInvertCamera(Action):
    """Stop the camera estimate (no estimate is kept)."""


@dataclass(frozen=True)
class PreviewInvertView(Action):
    """Render the model's mean w at yaw/pitch (degrees, `render`'s meaning) for the Invert panel's camera
    check; only the newest asked-for view is rendered."""
    yaw_deg: float
    pitch_deg: float


@dataclass(frozen=True)
class StopInversion(Action):
    """Stop the running inversion; the best result so far is kept and shown."""


@dataclass(frozen=True)
class SaveInversion(Action):
    """Write the last inversion's latent (latent.npz, as `main.py invert`) or its tuned checkpoint."""
    path: Path
    what: str = "latent"
    """'latent' or 'tuned'."""
