"""The Invert panel's work while attached to `main.py serve`: the same actions and AppState.invert fields
as app.inversion.InversionJobs (the Session holds one or the other), done on the server.

The target is prepared here for the panel (core.latents.prepare_image with the served model's resolution
and background, as the server prepares it), uploaded when a run starts, and inverted by the server's
StartInversion job: its progress messages ("phase loss x") give the live loss curve, its previews the best
reconstruction, Stop cancels it (the server keeps the best result so far, as locally). The result is a
latent source registered on the server, which the viewport then renders; saving runs SaveInversion there
and downloads the file to the path the panel chose. The camera check runs there too: EstimateInvertCamera
(the uploaded image) and PreviewInvertView send back yaw/pitch and the model's view as arrays.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import NamedTuple

from app.actions import EstimateInvertCamera, OpenInvertImage, PreviewInvertView, SaveInversion, StartInversion
from app.inversion import InversionSlots
from app.jobs import Job
from app.state import AppState
from remote.protocol import to_json

log = logging.getLogger(__name__)
LOSS_MESSAGE = re.compile(r"^(\S+) loss ([0-9.eE+-]+)$")
LOSS_NAME = "chosen on the server: the checkpoint's discriminator features when it has them, else pixel MSE"


class _Ran(NamedTuple):
    summary: dict
    losses: object
    generation: int


class AttachedInversion(InversionSlots):
    """The inversion as server jobs (upload, StartInversion, SaveInversion) with the server's progress."""

    def __init__(self, state: AppState, backend):
        """`backend`: the session's app.attached.RemoteBackend."""
        super().__init__(state)
        self.backend = backend
        self.remote_job = None
        """The server's StartInversion job while it runs (progress, previews)."""
        self.source: str | None = None
        """The server's name of the last result (for SaveInversion)."""
        self._seen: tuple[int, str] = (-1, "")
        """The server progress (step, message) last added to the loss curve."""

    def _ready(self) -> bool:
        return self.state.model.path is not None

    def _forget(self) -> None:
        self.source = None

    def _prepare(self, action: OpenInvertImage) -> Callable:
        resolution, white = self.state.model.image_resolution, self.state.model.options.white_back

        def prepare(_progress):
            from core.imaging import to_uint8
            from core.latents import prepare_image
            target, info = prepare_image(action.path, resolution, white, action.frame)
            return to_uint8(target[0]), info
        return prepare

    def _prepared(self, result) -> None:
        inv = self.state.invert
        (inv.target, inv.target_info), inv.loss_name = result, LOSS_NAME

    # ---- the inversion on the server ----------------------------------------------------------------
    def _start_run(self, action: StartInversion) -> None:
        s, client = self.state, self.backend.client
        generation = s.model.generation
        fields = {"options": to_json(action.options, changed_only=True)}
        if action.camera == "viewport":
            fields |= {"camera": "label", "label": action.view.label()[0].tolist()}
        elif action.camera == "angles":
            fields |= {"camera": "angles", "yaw_deg": action.yaw_deg, "pitch_deg": action.pitch_deg}
        else:
            fields["camera"] = "estimate"
        if action.frame is not None:
            fields["frame"] = action.frame

        def run(progress):
            image = client.upload_image(action.image, progress)
            fields["image"] = image
            job = self.remote_job = client.job("StartInversion", fields)
            while not job.wait(0.05):
                if progress.cancelled():
                    job.cancel()
            if job.cancelled:
                from core.progress import Cancelled
                raise Cancelled("stopped before the first step")
            if job.error:
                raise RuntimeError(job.error)
            return _Ran(job.result, job.arrays.get("losses"), generation)

        self.remote_job, self._seen = None, (-1, "")
        self._begin_run(action, run, "uploading")

    def _poll_run(self) -> None:
        job, inv = self.run_job, self.state.invert
        if job is None:
            return
        remote = self.remote_job
        progress = remote.progress if remote is not None else job.progress
        inv.fraction, inv.message = progress.fraction, progress.message
        if remote is not None:
            found = LOSS_MESSAGE.match(progress.message or "")
            if found and (progress.done, progress.message) != self._seen:
                self._seen = (progress.done, progress.message)
                inv.losses = inv.losses + [(found[1], float(found[2]))]
            if remote.preview_version != inv.preview_version and "reconstruction" in remote.previews:
                inv.preview, inv.preview_version = remote.previews["reconstruction"], remote.preview_version
        ended = self._end_run() if job.done else None
        if ended is None:
            return
        action, (summary, losses, _) = ended
        if remote is not None and "reconstruction" in remote.previews:
            inv.preview, inv.preview_version = remote.previews["reconstruction"], remote.preview_version + 1
        if losses is not None:
            phase = action.options.space
            inv.losses = [(phase, float(v)) for v in losses]
        self._show(summary, action)

    def _show(self, r: dict, action: StartInversion) -> None:
        s = self.state
        self.source = r["source"]
        s.invert.result = {
            "name": r["source"], "yaw_deg": r["yaw_deg"], "pitch_deg": r["pitch_deg"], "fov_deg": r["fov_deg"],
            "loss": r["loss"], "steps": r["steps"], "tune_steps": action.options.tune_steps if r["tuned"] else 0,
            "estimated": False, "interrupted": r["interrupted"], "tuned": r["tuned"], "camera": action.camera,
            "prepared": r["image_preparation"]}
        self._view_result(r["source"], action, math.radians(r["yaw_deg"]), math.radians(r["pitch_deg"]), r["fov_deg"])
        stopped = " (stopped: best so far)" if r["interrupted"] else ""
        s.set_status(f"inversion done on the server{stopped}: image loss {r['loss']:.4f}; the viewport shows "
                     "the result")

    # ---- the camera check on the server ------------------------------------------------------------
    def _estimate_run(self, action: EstimateInvertCamera) -> Callable:
        backend, generation = self.backend, self.state.model.generation

        def run(progress):
            fields = {"image": backend.client.upload_image(action.image, progress)}
            if action.frame is not None:
                fields["frame"] = action.frame
            if action.search is not None:
                fields["search"] = to_json(action.search, changed_only=True)
            job = backend.job("EstimateInvertCamera", fields, progress)
            return (job.result["yaw_deg"], job.result["pitch_deg"], job.arrays["view"], generation,
                    (action.image, action.frame))
        return run

    def _view_run(self, action: PreviewInvertView) -> Callable:
        backend, generation = self.backend, self.state.model.generation

        def run(progress):
            job = backend.job("PreviewInvertView", {"yaw_deg": action.yaw_deg, "pitch_deg": action.pitch_deg},
                              progress)
            return job.arrays["view"], generation, (action.yaw_deg, action.pitch_deg)
        return run

    # ---- saving -------------------------------------------------------------------------------------
    def _start_save(self, action: SaveInversion) -> None:
        if self.source is None:
            self.state.set_status("save: no inversion result for the loaded model", error=True)
            return
        fields = {"source": self.source, "what": action.what, "path": action.path.name}
        backend = self.backend

        def save(progress):
            action.path.parent.mkdir(parents=True, exist_ok=True)
            backend.fetch(backend.job("SaveInversion", fields, progress), action.path, progress)
            return f"saved {'tuned checkpoint' if action.what == 'tuned' else 'latent'} to {action.path}"
        self.save_job = Job(f"save {action.what} {action.path}", save)
