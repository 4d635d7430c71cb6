"""Jobs a client runs on the server, named by the studio's action types, with JSON fields.

Each handler turns the fields into the same typed action the studio builds (app.actions) and runs it by
the same GL-free handler the studio's session runs locally (app.handlers), through the client's model's
engine and its lock. Outputs are written
only below the served root's exports/ and named in the result for download. A result is a JSON dict and
optionally named numpy arrays (sent as binary parts); progress and cancel go through core.progress.
"""
from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.actions import (
    VIDEO_PATHS,
    ComputePCA,
    EstimateInvertCamera,
    ExportMesh,
    ExportVideo,
    InspectPlanes,
    PreviewInvertView,
    SaveInversion,
    SaveLatent,
    StartInversion,
)
from app.handlers import run_action, write_inversion
from core.camera_path import CameraPath
from core.cameras import OrbitCamera
from core.mesh import MeshOptions
from core.progress import Cancelled, Progress
from remote.models import Model
from remote.protocol import (
    FieldError,
    dataclass_from_json,
    fields_of,
    flag,
    integer,
    latent_from_json,
    number,
    request_from_json,
    text,
)
from remote.served_root import ServedRoot

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.1
PREVIEW_EVERY_S = 2.0
"""An inversion's live reconstruction is rendered and sent at most this often."""
MESH_LIMITS = {"resolution": (8, 1024), "chunk": (1024, 1 << 18), "num_views": (1, 9), "step": (1, 16),
               "dilate": (0, 8), "level": (-1e6, 1e6)}
INVERSION_LIMITS = {"steps": (1, 100_000), "tune_steps": (0, 100_000), "refine_steps": (0, 10_000),
                    "w_avg_samples": (2, 100_000), "starts": (0, 10_000), "seed": (0, 2**31 - 1)}
SEARCH_LIMITS = {"yaws": (1, 360), "latents": (0, 256), "coarse_resolution": (4, 512), "candidates": (1, 1024),
                 "keep": (1, 64), "fine_steps": (0, 10_000), "line_steps": (0, 10_000), "line_yaws": (1, 64)}
"""Bounds of training.camera_estimate.CameraSearch's integer fields sent by clients."""


@dataclass
class JobContext:
    """What a handler may use: the client's model, the served folder, the client's uploads and results."""
    model: Model
    root: ServedRoot
    uploads: dict[str, Path]
    """Upload id -> file (images for inversion)."""
    results: dict[str, Any]
    """Per-client memory of earlier jobs (inversion results to save)."""
    client_id: int
    preview: Callable[[str, np.ndarray], None] = lambda name, rgb: None
    """Send a live image (name, uint8 [H,W,3]) to the client."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Arrays of the result, sent beside its JSON."""

    @property
    def engine(self):
        return self.model.engine

    def output(self, name: Any, suffixes: tuple[str, ...]) -> Path:
        return self.root.export_target(name, suffixes)


def _path_result(ctx: JobContext, message: str, *paths: Path) -> dict[str, Any]:
    return {"message": message.replace(str(ctx.root.root) + "/", ""),
            "files": [p.relative_to(ctx.root.exports).as_posix() for p in paths]}


# ---- engine jobs: the studio's own actions -------------------------------------------------------

def export_mesh(ctx: JobContext, f: dict, progress: Progress) -> dict:
    f = fields_of(f, {"path", "latent", "options"}, "ExportMesh")
    path = ctx.output(f.get("path"), (".ply", ".obj", ".glb"))
    options = dataclass_from_json(MeshOptions, f.get("options", {}), "options", MESH_LIMITS)
    message = run_action(ExportMesh(path, latent_from_json(f.get("latent", {})), options), ctx.engine, progress)
    return _path_result(ctx, message, path)


def export_video(ctx: JobContext, f: dict, progress: Progress) -> dict:
    f = fields_of(f, {"path", "request", "camera", "kind", "frames", "fps", "mode", "keyframes", "interp_seed",
                      "depth_mask"}, "ExportVideo")
    path = ctx.output(f.get("path"), (".mp4",))
    request = check_request(ctx.model, request_from_json(f.get("request", {})))
    kind = f.get("kind", "orbit")
    if kind not in VIDEO_PATHS:
        raise FieldError(f"kind must be one of {', '.join(VIDEO_PATHS)}")
    mode = f.get("mode", "image")
    if mode not in ("image", "image_raw", "image_depth"):
        raise FieldError("mode must be image, image_raw or image_depth")
    keyframes = f.get("keyframes")
    action = ExportVideo(
        path=path, request=request, camera=dataclass_from_json(OrbitCamera, f.get("camera", {}), "camera"),
        kind=kind, frames=integer(f.get("frames", 120), 1, 10_000, "frames"),
        fps=number(f.get("fps", 30.0), 1e-3, 240, "fps"), mode=mode,
        keyframes=None if keyframes is None else CameraPath.from_json(keyframes),
        interp_seed=integer(f.get("interp_seed", 1), 0, 2**32 - 1, "interp_seed"),
        depth_mask=flag(f.get("depth_mask", True), "depth_mask"))
    return _path_result(ctx, run_action(action, ctx.engine, progress), path)


def compute_pca(ctx: JobContext, f: dict, progress: Progress) -> dict:
    fields_of(f, set(), "ComputePCA")
    return {"message": run_action(ComputePCA(), ctx.engine, progress)}


def inspect_planes(ctx: JobContext, f: dict, progress: Progress) -> dict:
    """The Planes panel's images and statistics: stats in the JSON, the images as arrays."""
    f = fields_of(f, {"latent", "channel", "noise_mode", "noise_seed"}, "InspectPlanes")
    channel = f.get("channel")
    channel = None if channel is None else integer(channel, 0, 4095, "channel")
    request = request_from_json({"latent": f.get("latent", {}), "noise_mode": f.get("noise_mode", "const"),
                                 "noise_seed": f.get("noise_seed", 0)})
    action = InspectPlanes(key=(), latent=request.latent, channel=channel, noise_mode=request.noise_mode,
                           noise_seed=request.noise_seed)
    out = run_action(action, ctx.engine, progress)
    ctx.arrays.update({k: v for k, v in out.items() if isinstance(v, np.ndarray)})
    return {k: v for k, v in out.items() if not isinstance(v, np.ndarray)}


def save_latent(ctx: JobContext, f: dict, progress: Progress) -> dict:
    """The latent's ws and the camera it is seen from, as `main.py invert` writes latent.npz (so that
    `render/mesh/video --latent` take it)."""
    f = fields_of(f, {"path", "latent", "camera", "settings"}, "SaveLatent")
    path = ctx.output(f.get("path"), (".npz",))
    request = request_from_json({"latent": f.get("latent", {}), "camera": f.get("camera", [])})
    settings = f.get("settings", {})
    if not isinstance(settings, dict):
        raise FieldError("settings must be a JSON object")
    with ctx.engine.lock:   # without a camera: the model's conditioning pose, as a render request
        camera = tuple(ctx.engine.camera_tensor(request).reshape(25).tolist())
    action = SaveLatent(path, settings, request.latent, camera)
    return _path_result(ctx, run_action(action, ctx.engine, progress), path)


# ---- inversion ------------------------------------------------------------------------------------

def _uploaded(ctx: JobContext, f: dict) -> Path:
    """The uploaded image the field 'image' names."""
    image = ctx.uploads.get(text(f.get("image"), "image", 64))
    if image is None:
        raise FieldError("image must name an image uploaded on this connection")
    return image


def _frame(f: dict) -> float | None:
    """The optional re-framing of a photo (app.actions.OpenInvertImage.frame)."""
    return None if f.get("frame") is None else number(f["frame"], 0.05, 1.0, "frame")


def estimate_invert_camera(ctx: JobContext, f: dict, progress: Progress) -> dict:
    """The camera of an uploaded image (yaw/pitch in degrees) and the model's mean w at that view (array
    'view'), as the Invert panel's camera check shows it locally (app.invert_camera)."""
    from app.invert_camera import estimate_view
    from training.camera_estimate import CameraSearch
    f = fields_of(f, {"image", "frame", "search"}, "EstimateInvertCamera")
    search = dataclass_from_json(CameraSearch, f["search"], "search", SEARCH_LIMITS) if "search" in f else None
    yaw, pitch, ctx.arrays["view"] = estimate_view(ctx.engine, _uploaded(ctx, f), _frame(f), progress, search)
    return {"yaw_deg": yaw, "pitch_deg": pitch}


def preview_invert_view(ctx: JobContext, f: dict, progress: Progress) -> dict:
    """The model's mean w at yaw/pitch (degrees, `render`'s meaning) as the array 'view'."""
    from app.invert_camera import render_view
    f = fields_of(f, {"yaw_deg", "pitch_deg"}, "PreviewInvertView")
    ctx.arrays["view"] = render_view(ctx.engine, number(f.get("yaw_deg", 0.0), -360, 360, "yaw_deg"),
                                     number(f.get("pitch_deg", 0.0), -90, 90, "pitch_deg"))
    return {}


def start_inversion(ctx: JobContext, f: dict, progress: Progress) -> dict:
    """Invert an uploaded image into the client's model (camera given as a label or yaw/pitch, or
    estimated); the result is registered with the engine as a latent source the client can render."""
    from core.cameras import frontal_label
    from core.imaging import to_uint8
    from training.image_inversion import invert_image, perceptual_loss, prepare_target
    from training.inversion import InversionOptions
    f = fields_of(f, {"image", "options", "camera", "label", "yaw_deg", "pitch_deg", "frame"}, "StartInversion")
    image = _uploaded(ctx, f)
    options = dataclass_from_json(InversionOptions, f.get("options", {}), "options", INVERSION_LIMITS)
    camera = f.get("camera", "label")
    engine, model = ctx.engine, ctx.model
    with engine.lock:
        base = engine.base_G
        G = copy.deepcopy(base)
    target = prepare_target(G, image, _frame(f))
    if camera == "label":
        label = request_from_json({"camera": f.get("label")}).camera
        if len(label) != 25:
            raise FieldError("camera 'label' needs a label of 25 numbers")
        label = torch.tensor(label, device=engine.device)
    elif camera == "angles":
        label = frontal_label(G.options, None, engine.device,
                              yaw=math.radians(number(f.get("yaw_deg", 0.0), -360, 360, "yaw_deg")),
                              pitch=math.radians(number(f.get("pitch_deg", 0.0), -90, 90, "pitch_deg")))[0]
    elif camera == "estimate":
        label = None
    else:
        raise FieldError("camera must be label, angles or estimate")
    next_preview = [0.0]

    def on_best(ws: torch.Tensor, cam: torch.Tensor, G_now, force: bool = False) -> None:
        if force or time.monotonic() >= next_preview[0]:
            with torch.no_grad():
                ctx.preview("reconstruction", to_uint8(G_now.synthesis(ws, cam)["image"][0]))
            next_preview[0] = time.monotonic() + PREVIEW_EVERY_S

    try:
        inverted = invert_image(G, target, options, label, perceptual_loss(model.path, engine.device), progress,
                                network=model.path, on_best=on_best)
    except KeyboardInterrupt:
        raise Cancelled("stopped before the first step") from None
    result, shown = inverted.result, inverted.G
    on_best(result.ws.to(engine.device), result.camera.to(engine.device).view(1, 25), shown, force=True)
    name = f"inversion-{ctx.client_id}-{len(ctx.results) + 1}"
    with engine.lock:
        if engine.base_G is not base:
            raise FieldError("the model was reloaded meanwhile: the result was dropped")
        engine.set_source(name, result.ws, shown)
    summary = {"source": name, "yaw_deg": math.degrees(result.yaw), "pitch_deg": math.degrees(result.pitch),
               "fov_deg": result.fov_deg, "loss": result.loss, "interrupted": result.interrupted,
               "tuned": result.G is not None, "camera": result.camera.reshape(25).tolist(),
               "image_preparation": target.prepared, "steps": len(result.history)}
    # the saved latent names the model as clients see it, not the server's own paths
    ctx.results[name] = (result, dict(inverted.settings, network=model.name, image=Path(image).name))
    ctx.arrays["losses"] = np.array([loss for _, _, loss in result.history], dtype=np.float32)
    return summary


def save_inversion(ctx: JobContext, f: dict, progress: Progress) -> dict:
    """An inversion's latent.npz (as `main.py invert`) or its tuned checkpoint, below exports/."""
    f = fields_of(f, {"source", "what", "path"}, "SaveInversion")
    found = ctx.results.get(text(f.get("source"), "source", 128))
    if found is None:
        raise FieldError("source must name an inversion run on this connection")
    result, settings = found
    what = f.get("what", "latent")
    if what not in ("latent", "tuned"):
        raise FieldError("what must be latent or tuned")
    if what == "tuned" and result.G is None:
        raise FieldError("this inversion has no tuned weights (tune_steps was 0)")
    path = ctx.output(f.get("path"), (".ckpt",) if what == "tuned" else (".npz",))
    return _path_result(ctx, write_inversion(result, settings, what, path), path)


HANDLERS: dict[str, Callable[[JobContext, dict, Progress], dict]] = {kind.__name__: handler for kind, handler in {
    ExportMesh: export_mesh, ExportVideo: export_video, ComputePCA: compute_pca, InspectPlanes: inspect_planes,
    SaveLatent: save_latent, StartInversion: start_inversion, SaveInversion: save_inversion,
    EstimateInvertCamera: estimate_invert_camera, PreviewInvertView: preview_invert_view}.items()}
"""Job kind (the studio's action type name) -> handler(context, fields, progress) -> result JSON."""


def check_request(model: Model, request):
    """FieldError when a request asks for more than the model's Render panel allows."""
    if request.resolution is not None and request.resolution > model.max_resolution():
        raise FieldError(f"resolution {request.resolution} is above this model's limit {model.max_resolution()}")
    return request


# ---- running them ---------------------------------------------------------------------------------

class SentProgress(Progress):
    """Progress whose updates go to the client, at most every PROGRESS_EVERY_S."""

    def __init__(self, send: Callable[[dict], None], job_id: str):
        super().__init__()
        self._send, self._id, self._next = send, job_id, 0.0

    def update(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if now >= self._next or done >= total:
            self._next = now + PROGRESS_EVERY_S
            self._send({"type": "job_progress", "id": self._id, "done": int(done), "total": int(total),
                        "message": str(message)[:200]})
        super().update(done, total, message)


class Job:
    """One job on its own thread; at most `slots` jobs of the server run at once, the others wait."""

    def __init__(self, job_id: str, kind: str, fields: dict, ctx: JobContext, slots: threading.Semaphore,
                 finish: Callable[[Job, str, dict, dict[str, np.ndarray]], None]):
        if kind not in HANDLERS:
            raise FieldError(f"unknown job kind {str(kind)[:40]!r} (one of {', '.join(HANDLERS)})")
        self.id, self.kind, self.ctx = job_id, kind, ctx
        self.progress = SentProgress(lambda msg: finish(self, "progress", msg, {}), job_id)
        self._finish, self._slots, self._fields = finish, slots, fields
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{kind}", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self.progress.cancel()

    def _run(self) -> None:
        try:
            with self._slots:
                if self.progress.cancelled():
                    raise Cancelled("cancelled before it started")
                result = HANDLERS[self.kind](self.ctx, self._fields, self.progress)
            self._finish(self, "done", result, self.ctx.arrays)
        except Cancelled:
            self._finish(self, "cancelled", {}, {})
        except Exception as e:  # reported to the client in one line; the server goes on
            from core.errors import one_line
            if not isinstance(e, (FieldError, ValueError, OSError)):
                log.exception("job %s failed", self.kind)
            self._finish(self, "error", {"message": one_line(e, 300)}, {})
        finally:
            self.done.set()
