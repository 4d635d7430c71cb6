"""AppState: the studio's single source of truth, and the progressive RenderRequest ladder built from it.

Panels read and write these dataclasses; the studio turns them into frozen core.engine.RenderRequest
values each frame. A request is re-rendered only when it differs from the one on screen (value-based
dirty check), so a misspelt field is a TypeError rather than a silently ignored key.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.cameras import OrbitCamera, frontal_label, split_label
from core.config import RenderOptions
from core.engine import Latent, RenderRequest

ViewMode = Literal["image", "raw", "depth", "opacity"]
VIEW_MODES: tuple[ViewMode, ...] = ("image", "raw", "depth", "opacity")

INTERACTIVE_MIN_RESOLUTION = 48
"""Floor for the neural resolution while dragging (a fixed floor, not a feedback loop on frame time)."""
INTERACTIVE_MIN_SAMPLES = 0.5
"""Floor for the depth-sample multiplier while dragging."""
DEPTH_FORMAT = "%.3f"
"""How depths in scene units are written: the Render panel's near/far and the colour bar's labels."""
SETTLE_SECONDS = 0.25
"""Input must be still this long before the progressive refinement starts."""


@dataclass
class ModelState:
    path: str | None = None
    """The checkpoint on screen (panels open another with app.actions.OpenModel)."""
    loading: str | None = None
    error: str = ""
    """Why the last open failed ('' after a successful one); the Model panel shows it by its path field."""
    info: dict[str, str] = field(default_factory=dict)
    options: RenderOptions = field(default_factory=RenderOptions)
    """The loaded generator's typed rendering options (camera defaults, box size, background)."""
    num_ws: int = 0
    neural_resolution: int = 64
    image_resolution: int = 256
    """Side of the super-resolved output."""
    generation: int = 0
    """Bumped on every successful load; panels use it to drop per-model caches."""


def default_mix_layers(num_ws: int) -> list[bool]:
    """Style mixing default: the second half of the ws (fine styles) from the mix seed."""
    return [i >= num_ws // 2 for i in range(num_ws)]


@dataclass
class LatentState:
    seed: int = 0
    psi: float = 0.7
    cutoff: int = 0
    """0 = no cutoff (truncate all ws)."""
    animate: bool = False
    speed: float = 1.0
    """Seeds per second while animating (the fractional part drives the interpolation)."""
    interp_enabled: bool = False
    interp_seed: int = 1
    interp_t: float = 0.0
    mix_enabled: bool = False
    mix_seed: int = 1000
    mix_layers: list[bool] = field(default_factory=list)
    directions: list[float] = field(default_factory=list)
    """Amount (in standard deviations) along each principal direction of W."""
    direction_layers: tuple[int, int] = (0, 0)
    """[start, stop) of the ws the directions edit; (0, 0) = all."""
    cond_yaw: float = 0.0
    cond_pitch: float = 0.0
    source: str | None = None
    """An inverted latent registered with the engine (Invert panel) is shown instead of the seeds; the
    W directions still apply to it. None: the seeds."""

    def fit_to_model(self, num_ws: int, same_architecture: bool) -> None:
        """Make the model-dependent settings valid for a model with `num_ws` ws: mixing layers and the
        directions' ws range are reset when they do not fit, the cutoff is clamped, and W-direction
        amounts (principal components of another model's W) are zeroed unless the architecture is
        unchanged (a newer snapshot of the same run)."""
        if len(self.mix_layers) != num_ws:
            self.mix_layers = default_mix_layers(num_ws)
        lo, hi = self.direction_layers
        if not 0 <= lo < hi <= num_ws:
            self.direction_layers = (0, 0)
        self.cutoff = min(max(int(self.cutoff), 0), num_ws)
        if not same_architecture:
            self.directions = [0.0] * len(self.directions)

    def latent(self) -> Latent:
        mix = [i for i, on in enumerate(self.mix_layers) if on] if self.mix_enabled else []
        dirs = tuple((k, float(a)) for k, a in enumerate(self.directions) if a)
        lo, hi = self.direction_layers
        if self.source is not None:
            return Latent(source=self.source, directions=dirs,
                          direction_layers=(lo, hi) if dirs and hi > lo else None)
        return Latent(seed=int(self.seed), psi=float(self.psi), cutoff=int(self.cutoff) or None,
                      mix_seed=int(self.mix_seed) if mix else None, mix_layers=tuple(mix),
                      interp_seed=int(self.interp_seed) if self.interp_enabled else None,
                      interp_t=float(self.interp_t) if self.interp_enabled else 0.0,
                      directions=dirs, direction_layers=(lo, hi) if dirs and hi > lo else None,
                      cond_yaw=float(self.cond_yaw), cond_pitch=float(self.cond_pitch))


@dataclass
class ViewState:
    mode: ViewMode = "image"
    split: bool = False
    """Compare: raw neural image left of split_pos, super-resolved image right of it."""
    split_pos: float = 0.5
    resolution: int = 0
    """Neural rendering resolution; 0 = the checkpoint's."""
    sample_scale: float = 1.0
    stochastic: bool = False
    precision: str = "fp32"
    """'fp32' (exact) or 'bf16' (autocast, faster on recent hardware)."""
    progressive: bool = True
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    colormap: int = 1
    """0 grey, 1 turbo, 2 diverging (colormap.frag)."""
    depth_auto: bool = True
    depth_range: tuple[float, float] = (2.25, 3.3)
    depth_near_bright: bool = True
    depth_shown: tuple[float, float] | None = None
    """(near, far) the depth colour map spans in the frame on screen (set by the studio each frame)."""
    depth_mask: bool = True
    """Depth view: texels of opacity below 0.5 are background (drawn far, left out of the auto range);
    off shows every texel's depth, floaters and the arbitrary depth of empty rays included."""
    coarse_scale: float = 1.0
    """Extra multiplier on the coarse depth samples (the original visualizer's 'depth samples')."""
    importance_scale: float = 1.0
    """Extra multiplier on the importance depth samples (0: no fine pass)."""
    noise_mode: str = "const"
    """Backbone noise: 'const' (stored buffers, as the original tools), 'random' (noise_seed) or 'none'."""
    noise_seed: int = 0
    target_fps: float = 0.0
    """Dynamic resolution while the camera moves: the preview's size and samples adapt to this frame
    rate (never below the floors); 0 = a fixed half-size preview."""
    max_fps: float = 60.0
    """UI frame-rate limit."""
    pixel_exact: bool = False
    """Show the frame 1:1 (one texel per screen pixel) when it fits, instead of fitting the viewport."""
    probe: bool = False
    """Hovering the image shows depth, opacity and colour under the cursor (off at start: the tooltip
    would cover the object wherever the pointer rests)."""


@dataclass
class InteractionState:
    dragging: bool = False
    last_input: float = -1e9
    """time.monotonic() of the last camera/latent change made by continuous input."""

    def touch(self) -> None:
        self.last_input = time.monotonic()

    def active(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.dragging or now - self.last_input < SETTLE_SECONDS


@dataclass
class TrainingState:
    run_dir: str = ""
    auto_reload: bool = True
    running: bool = False
    """A run started from the studio is running."""
    exit_code: int | None = None
    error: str = ""
    """The trainer's own one-line reason when a run started here failed."""
    reader: object = None
    """Attached to a server serving a run: app.served_run.ServedRun, read in place of a RunReader of run_dir."""


@dataclass
class CameraPathState:
    """The keyframe camera path being edited (core.camera_path.Keyframe values)."""
    keyframes: list = field(default_factory=list)
    loop: bool = False
    t: float = 0.0
    """Scrubber position in [0, 1]."""
    preview: bool = False
    """Drive the viewport camera from the path at `t`."""

    def path(self):
        """core.camera_path.CameraPath of the keyframes, or None without any."""
        from core.camera_path import CameraPath
        return CameraPath(list(self.keyframes), loop=self.loop) if self.keyframes else None


@dataclass
class RecordingState:
    """Screen recording of the viewport (the Export panel asks with Start/StopRecording, the studio records)."""
    path: str = "recording.mp4"
    fps: int = 30
    size: int = 0
    """Side in pixels; 0 = the frame's own size (rounded down to a multiple of 16)."""
    active: bool = False
    frames: int = 0


@dataclass
class JobState:
    """The action running on the session's job thread, as panels show it."""
    name: str = ""
    running: bool = False
    fraction: float = 0.0
    message: str = ""
    outcome_of: str = ""
    """Action name of the last finished job, so the panel that asked for it can show how it ended."""
    outcome: str = ""
    """Its result line, or why it failed or that it was cancelled."""
    outcome_error: bool = False


@dataclass
class InvertState:
    """The Invert panel's data, filled in by the session (app.inversion) from its jobs."""
    image: str = ""
    """The image last opened or dropped for inversion."""
    frame: float | None = None
    """The re-framing it was prepared with (OpenInvertImage.frame)."""
    target: np.ndarray | None = None
    """The prepared target as the inversion sees it, [R, R, 3] uint8 (None: no readable image)."""
    target_info: str = ""
    """What was done to the image (core.latents.prepare_image), or why it could not be read."""
    loss_name: str = ""
    """The loss the inversion uses on the loaded model ('' until an image was opened)."""
    running: bool = False
    fraction: float = 0.0
    message: str = ""
    losses: list[tuple[str, float]] = field(default_factory=list)
    """(phase, image loss) per optimisation step of the run in progress or finished last."""
    preview: np.ndarray | None = None
    """The best reconstruction so far, [R, R, 3] uint8."""
    preview_version: int = 0
    result: dict | None = None
    """Summary of the last finished (or stopped) run: source name, yaw/pitch/fov in degrees, loss,
    steps, interrupted, tuned, prepared (what was done to the image); None: no result for the loaded model."""
    estimating: bool = False
    """The camera estimate runs (its progress: estimate_fraction, estimate_message)."""
    estimate_fraction: float = 0.0
    estimate_message: str = ""
    estimate: tuple[float, float] | None = None
    """(yaw, pitch) in degrees (`render`'s meaning) estimated for the shown target; None: none yet."""
    estimate_version: int = 0
    """Counts finished estimates, so the panel knows when to set its sliders to a new one."""
    view: np.ndarray | None = None
    """The model's mean w rendered at view_at, [R, R, 3] uint8: the camera check next to the target."""
    view_at: tuple[float, float] | None = None
    """(yaw, pitch) in degrees that `view` shows."""
    view_version: int = 0


@dataclass
class PerfState:
    texture_path: str = "host copy"
    texture_reason: str = ""
    device: str = "cpu"
    last_timings: dict[str, float] = field(default_factory=dict)
    last_cache: dict[str, bool] = field(default_factory=dict)
    frame_resolution: str = ""
    ui_frame_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    rung_ms: dict[str, float] = field(default_factory=dict)
    """Time of the last render of each refinement step: preview, raw, SR."""
    rung_detail: dict[str, str] = field(default_factory=dict)
    preview_scale: float = 0.5
    """Dynamic resolution: the preview's fraction of full size (adapted to ViewState.target_fps)."""
    link: list[tuple[str, str]] = field(default_factory=list)
    """Attached to a server: its address and state, round trip, bytes per frame (rows to show)."""


@dataclass
class AppState:
    camera: OrbitCamera = field(default_factory=OrbitCamera)
    latent: LatentState = field(default_factory=LatentState)
    view: ViewState = field(default_factory=ViewState)
    model: ModelState = field(default_factory=ModelState)
    interaction: InteractionState = field(default_factory=InteractionState)
    training: TrainingState = field(default_factory=TrainingState)
    perf: PerfState = field(default_factory=PerfState)
    job: JobState = field(default_factory=JobState)
    recording: RecordingState = field(default_factory=RecordingState)
    camera_path: CameraPathState = field(default_factory=CameraPathState)
    invert: InvertState = field(default_factory=InvertState)
    actions: list = field(default_factory=list)
    """app.actions values the panels ask for, queued until the session's handler for their type takes them."""
    planes: tuple | None = None
    """(key, plane images dict or error text) of the last InspectPlanes action."""
    planes_wanted: tuple | None = None
    """Key of the InspectPlanes action asked for last."""
    pca_ready: bool = False
    """The loaded model's principal directions of W are computed."""
    output_dir: str = ""
    """Folder for relative file names (per user, app.files; chosen in the Export panel)."""
    status: str = ""
    """One-line status or error shown at the bottom of the window."""
    status_is_error: bool = False

    def fit_to_model(self, previous_num_ws: int) -> None:
        """After a load: latent settings valid for the new model; a custom neural resolution far from
        the new model's is dropped."""
        m = self.model
        self.latent.fit_to_model(m.num_ws, same_architecture=previous_num_ws == m.num_ws)
        if self.view.resolution > max(2 * m.neural_resolution, 128):
            self.view.resolution = 0

    def set_status(self, message: str, error: bool = False) -> None:
        self.status, self.status_is_error = message, error


@dataclass(frozen=True)
class StartView:
    """A state to open the studio at, with the meaning and units of `main.py render` (degrees; the
    camera on a sphere of avg_camera_radius around the world origin, looking at avg_camera_pivot)."""
    seed: int | None = None
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    fov_deg: float | None = None
    psi: float | None = None
    mode: str | None = None
    """image | image_raw | image_depth (render's names)."""

    def apply(self, state: AppState, options: RenderOptions) -> None:
        """Set latent, camera and view of `state` for a model with rendering `options`."""
        if self.seed is not None:
            state.latent.seed = int(self.seed)
        if self.psi is not None:
            state.latent.psi = float(self.psi)
        if self.fov_deg is not None or self.yaw_deg is not None or self.pitch_deg is not None:
            state.camera = render_camera(options, math.radians(self.yaw_deg or 0.0),
                                         math.radians(self.pitch_deg or 0.0), self.fov_deg)
        if self.mode == "image_raw":
            state.view.mode = "raw"
        elif self.mode == "image_depth":  # render's depth PNG: grey, near = bright, background masked
            state.view.mode, state.view.colormap = "depth", 0
            state.view.depth_auto, state.view.depth_near_bright = True, True
            state.view.depth_mask = True                # render's default (--depth-mask)
        elif self.mode == "image":
            state.view.mode = "image"


def render_camera(options: RenderOptions, yaw: float, pitch: float, fov_deg: float | None = None) -> OrbitCamera:
    """The OrbitCamera whose pose is `render`'s camera (offsets yaw/pitch in radians from frontal).

    render's camera circles the world origin and looks at the pivot; OrbitCamera circles its pivot.
    Both build the pose from the camera centre and the look-at point, so the view through the same
    centre and look-at point (Keyframe.to_orbit inverts the sphere parametrisation) gives the same label.
    """
    from core.camera_path import Keyframe
    fov = fov_deg or options.avg_camera_fov
    cam2world, _ = split_label(frontal_label(options, fov, yaw=yaw, pitch=pitch).double())
    centre = tuple(float(x) for x in cam2world[0, :3, 3])
    return Keyframe(centre, tuple(float(x) for x in options.avg_camera_pivot), fov).to_orbit()


def request_key(request: RenderRequest) -> RenderRequest:
    """The request without its generation stamp, for 'is this already on screen?' comparisons."""
    return dataclasses.replace(request, generation=0)


def render_ladder(state: AppState, now: float | None = None) -> list[RenderRequest]:
    """The progressive sequence of requests for the current state, cheapest first.

    While input is active: one raw preview at reduced resolution and samples, never below the floors
    (half size, or with a target frame rate the size the dynamic-resolution controller found).
    At rest: raw at full resolution, then the super-resolved image when the view needs it.
    """
    v = state.view
    camera = tuple(float(x) for x in state.camera.label()[0].tolist())
    full_res = v.resolution or state.model.neural_resolution
    wants_sr = v.mode == "image"
    final = RenderRequest(latent=state.latent.latent(), camera=camera, resolution=full_res,
                          sample_scale=v.sample_scale, coarse_scale=v.coarse_scale,
                          importance_scale=v.importance_scale, noise_mode=v.noise_mode,
                          noise_seed=int(v.noise_seed) if v.noise_mode == "random" else 0,
                          superresolution=wants_sr, stochastic=v.stochastic, precision=v.precision)
    if not v.progressive:
        return [final]
    if state.interaction.active(now):
        scale = state.perf.preview_scale if v.target_fps > 0 else 0.5
        return [dataclasses.replace(
            final, superresolution=False,
            resolution=max(min(full_res, INTERACTIVE_MIN_RESOLUTION), round(full_res * scale)),
            sample_scale=max(min(v.sample_scale, INTERACTIVE_MIN_SAMPLES), v.sample_scale * scale))]
    raw = dataclasses.replace(final, superresolution=False)
    return [raw, final] if wants_sr else [final]


def final_request(state: AppState) -> RenderRequest:
    """The ladder's last rung for the current state: exactly what the viewport shows once refined."""
    return render_ladder(dataclasses.replace(state, interaction=InteractionState()))[-1]


def next_request(ladder: list[RenderRequest], shown: RenderRequest | None) -> RenderRequest | None:
    """The rung after the one on screen (the first rung if the screen shows something else)."""
    keys = [request_key(r) for r in ladder]
    shown_key = request_key(shown) if shown is not None else None
    index = keys.index(shown_key) if shown_key in keys else -1
    return ladder[index + 1] if index + 1 < len(ladder) else None
