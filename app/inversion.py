"""The Invert panel's work, owned by the Session: preparing the target image, the inversion job with its
live loss curve and reconstruction, showing the result in the viewport, and saving it.

The inversion runs on a job thread on a deep copy of the engine's generator taken under the engine
lock (training.inversion.Inverter copies it again), so the viewport keeps rendering meanwhile. When it
ends (or is stopped: the Inverter keeps the best result so far) the inverted ws are registered with
the engine as a ws source, rendered by a copy of the generator carrying the inverted noise maps or the
tuned weights (RenderEngine.set_source); the loaded generator itself is never modified, so returning
to the seeds (LatentState.source = None) renders exactly as before. Only the UI thread writes AppState.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from app.actions import (
    Action,
    CancelInvertCamera,
    EstimateInvertCamera,
    OpenInvertImage,
    PreviewInvertView,
    SaveInversion,
    StartInversion,
    StopInversion,
)
from app.handlers import write_inversion
from app.jobs import Job
from app.state import AppState, render_camera
from core.engine import RenderEngine
from core.errors import StudioError
from core.progress import Cancelled

log = logging.getLogger(__name__)
PREVIEW_S = 2.0
"""The live reconstruction is re-rendered at most this often, and at most a fifth of the job's time goes
to it (each preview is a forward pass the optimisation waits for)."""


class _Live:
    """What the job thread shows while it runs: the inverter (its loss history) and the newest preview."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inverter = None
        self.preview: np.ndarray | None = None
        self.version = 0
        self._next = -math.inf
        """time.monotonic() before which no preview is rendered."""

    def on_best(self, ws: torch.Tensor, label: torch.Tensor, G, force: bool = False) -> None:
        """Inverter hook: render the best reconstruction so far when PREVIEW_S seconds and four times
        the last preview's cost have passed (`force`: now, e.g. the final result)."""
        from core.imaging import to_uint8
        start = time.monotonic()
        if not force and start < self._next:
            return
        with torch.no_grad():
            image = to_uint8(G.synthesis(ws, label)["image"][0])
        with self.lock:
            self.preview, self.version = image, self.version + 1
        end = time.monotonic()
        self._next = end + max(PREVIEW_S, 4 * (end - start))

    def history(self) -> list[tuple[str, float]]:
        inverter = self.inverter
        return [(phase, loss) for phase, _, loss in list(inverter.history)] if inverter is not None else []


@dataclasses.dataclass
class _Outcome:
    """A finished (or stopped) inversion: what the panel saves."""
    name: str
    result: object
    """training.inversion.InversionResult"""
    settings: dict
    generation: int
    """state.model.generation of the model it was inverted into."""


class InversionSlots:
    """The Invert panel's job slots (target image, inversion, saving, and the camera check: estimate and
    view) and the session's handlers of its actions (False: not now, keep it queued); `poll` once per UI
    frame. Subclasses say how each job runs: InversionJobs on this machine's engine,
    app.attached_inversion.AttachedInversion on a server."""

    def __init__(self, state: AppState):
        self.state = state
        self.prepare_job: Job | None = None
        self.run_job: Job | None = None
        self.save_job: Job | None = None
        self.estimate_job: Job | None = None
        self.view_job: Job | None = None
        self.view_next: PreviewInvertView | None = None
        """The newest view asked for while one renders (the ones in between are skipped)."""
        self.running: StartInversion | None = None

    @property
    def busy(self) -> bool:
        return any(j is not None for j in (self.prepare_job, self.run_job, self.save_job, self.estimate_job,
                                           self.view_job))

    def handlers(self) -> dict[type[Action], Callable[[Action], bool]]:
        return {OpenInvertImage: self._open_image, StartInversion: self._start, StopInversion: self._stop,
                SaveInversion: self._save, EstimateInvertCamera: self._estimate,
                CancelInvertCamera: self._cancel_estimate, PreviewInvertView: self._preview_view}

    def _ready(self) -> bool:
        """A model is there to work on."""
        raise NotImplementedError

    def _open_image(self, action: OpenInvertImage) -> bool:
        if not self._ready() or self.prepare_job is not None:
            return False
        inv = self.state.invert
        inv.image, inv.frame = action.path, action.frame
        self._drop_estimate()   # it was made for the previous target
        self.prepare_job = Job(f"open image {action.path}", self._prepare(action))
        return True

    def _drop_estimate(self) -> None:
        inv = self.state.invert
        if self.estimate_job is not None:
            self.estimate_job.cancel()
        inv.estimate, inv.view, inv.view_at, self.view_next = None, None, None, None

    def _estimate(self, action: EstimateInvertCamera) -> bool:
        if self.estimate_job is not None:
            self._fail("a camera estimate is already running: cancel it first")
            return True
        if not self._ready() or any(isinstance(a, OpenInvertImage) for a in self.state.actions):
            return False   # the target it is for opens first
        inv = self.state.invert
        self._drop_estimate()
        inv.estimating, inv.estimate_fraction, inv.estimate_message = True, 0.0, "starting"
        self.estimate_job = Job("estimate the camera", self._estimate_run(action))
        return True

    def _cancel_estimate(self, action: CancelInvertCamera) -> bool:
        self.state.actions = [a for a in self.state.actions if not isinstance(a, EstimateInvertCamera)]
        if self.estimate_job is not None:
            self.estimate_job.cancel()
        return True

    def _preview_view(self, action: PreviewInvertView) -> bool:
        if not self._ready():
            return False
        self.view_next = action
        return True

    def _start(self, action: StartInversion) -> bool:
        if self.run_job is not None:
            self._fail("an inversion is already running: stop it first")
            return True
        if not self._ready():
            return False
        self._start_run(action)
        return True

    def _stop(self, action: StopInversion) -> bool:
        self.state.actions = [a for a in self.state.actions if not isinstance(a, StartInversion)]
        if self.run_job is not None:
            self.run_job.cancel()
        return True

    def _save(self, action: SaveInversion) -> bool:
        if self.save_job is not None:
            return False
        self._start_save(action)
        return True

    def model_changed(self) -> None:
        """A model was (re)loaded: results and the loss choice belong to the previous one; a run in
        progress is stopped (its result could not be shown), an opened image is prepared again."""
        inv = self.state.invert
        if self.run_job is not None:
            self.run_job.cancel()
        self._forget()
        inv.result, inv.loss_name = None, ""
        self._drop_estimate()
        self.state.latent.source = None
        if inv.image:
            self.state.actions.append(OpenInvertImage(inv.image, inv.frame))

    def close(self) -> None:
        for job in (self.prepare_job, self.run_job, self.save_job, self.estimate_job, self.view_job):
            if job is not None:
                job.cancel()
                job.wait(60)

    # ---- per frame ----------------------------------------------------------------------------------
    def poll(self) -> None:
        self._poll_prepare()
        self._poll_run()
        self._poll_save()
        self._poll_estimate()
        self._poll_view()

    def _fail(self, message: str) -> None:
        """A user error of the panel: one line in the log and the status line."""
        log.error("%s", message)
        self.state.set_status(message, error=True)

    def _poll_prepare(self) -> None:
        job, inv = self.prepare_job, self.state.invert
        if job is None or not job.done:
            return
        self.prepare_job = None
        if job.error:   # the job logged it (one line, traceback behind details)
            inv.target, inv.target_info = None, f"cannot use {Path(inv.image).name}: {job.error}"
            self.state.set_status(f"cannot {job.name}: {job.error}", error=True)
            return
        self._prepared(job.result)
        self.state.set_status(f"inversion target: {inv.target_info}")

    def _poll_estimate(self) -> None:
        job, inv = self.estimate_job, self.state.invert
        if job is None:
            return
        inv.estimate_fraction, inv.estimate_message = job.progress.fraction, job.progress.message
        if not job.done:
            return
        self.estimate_job, inv.estimating = None, False
        if job.cancelled:
            self.state.set_status("camera estimate stopped: no estimate")
        elif job.error:   # logged by the job
            self.state.set_status(f"camera estimate failed: {job.error}", error=True)
        elif job.result[3] != self.state.model.generation or job.result[4] != (inv.image, inv.frame):
            self.state.set_status("camera estimate dropped: the model or the image changed meanwhile", error=True)
        else:
            yaw, pitch, view = job.result[:3]
            inv.estimate, inv.estimate_version = (yaw, pitch), inv.estimate_version + 1
            inv.view, inv.view_at = view, (yaw, pitch)
            inv.view_version += 1
            self.state.set_status(f"camera estimated: yaw {yaw:+.1f} deg, pitch {pitch:+.1f} deg; compare the "
                                  "model at that view with the target, correct it if needed, then Start")

    def _poll_view(self) -> None:
        job, inv = self.view_job, self.state.invert
        if job is not None and job.done:
            self.view_job = None
            if job.error:   # logged by the job
                self.state.set_status(f"cannot render the view: {job.error}", error=True)
            elif not job.cancelled and job.result[1] == self.state.model.generation and inv.estimate is not None:
                inv.view, inv.view_at = job.result[0], job.result[2]
                inv.view_version += 1
        if self.view_job is None and self.view_next is not None and self._ready():
            action, self.view_next = self.view_next, None
            self.view_job = Job("render the view", self._view_run(action))

    def _begin_run(self, action: StartInversion, run: Callable, message: str) -> None:
        """Start the run job: the panel shows it running, with a fresh loss curve and no preview."""
        inv = self.state.invert
        self.running = action
        inv.running, inv.fraction, inv.message = True, 0.0, message
        inv.losses, inv.preview = [], None
        self.run_job = Job("invert", run)

    def _end_run(self) -> tuple[StartInversion, object] | None:
        """The finished run's action and result, once, when it ended with one for the loaded model."""
        job, s = self.run_job, self.state
        self.run_job, action, self.running = None, self.running, None
        s.invert.running = False
        if job.cancelled:
            s.set_status("inversion stopped before its first step: no result")
        elif job.error:
            s.set_status(f"inversion failed: {job.error}", error=True)
        elif job.result.generation != s.model.generation:   # finished just before another model loaded
            s.set_status("inversion result dropped: another model was loaded meanwhile", error=True)
        else:
            return action, job.result
        return None

    def _view_result(self, name: str, action: StartInversion, yaw: float, pitch: float, fov_deg: float) -> None:
        """Point the viewport at a result: its latent source, and the camera (radians) it was fitted from."""
        s = self.state
        s.latent.source, s.latent.animate = name, False
        if action.camera == "viewport":
            s.camera = copy.deepcopy(action.view)
        else:
            s.camera = render_camera(s.model.options, yaw, pitch, fov_deg if action.camera == "estimate" else None)

    def _poll_save(self) -> None:
        job = self.save_job
        if job is None or not job.done:
            return
        self.save_job = None
        if job.error:   # logged by the job
            self.state.set_status(f"cannot {job.name}: {job.error}", error=True)
        else:
            log.info("%s", job.result)
            self.state.set_status(job.result)

    # ---- what subclasses do -------------------------------------------------------------------------
    def _prepare(self, action: OpenInvertImage) -> Callable:
        """The job that prepares the target image; its result goes to `_prepared`."""
        raise NotImplementedError

    def _prepared(self, result) -> None:
        raise NotImplementedError

    def _start_run(self, action: StartInversion) -> None:
        raise NotImplementedError

    def _poll_run(self) -> None:
        raise NotImplementedError

    def _start_save(self, action: SaveInversion) -> None:
        raise NotImplementedError

    def _estimate_run(self, action: EstimateInvertCamera) -> Callable:
        """The estimate job: its result is (yaw_deg, pitch_deg, view [R,R,3] uint8, model generation,
        (image, frame) it was made for)."""
        raise NotImplementedError

    def _view_run(self, action: PreviewInvertView) -> Callable:
        """The view job: its result is (view [R,R,3] uint8, model generation, (yaw_deg, pitch_deg))."""
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop the results of the previous model."""
        raise NotImplementedError


class InversionJobs(InversionSlots):
    """The inversion on this machine's engine (a copy of its generator), with live loss and previews."""

    def __init__(self, state: AppState, engine: Callable[[], RenderEngine | None]):
        """`engine`: the session's current engine."""
        super().__init__(state)
        self.engine = engine
        self.live: _Live | None = None
        self.outcome: _Outcome | None = None
        self.count = 0
        self._perceptual: tuple[int, object, str] | None = None
        """(model generation, feature extractor or None, loss name) of the loaded model."""

    def _ready(self) -> bool:
        return self.engine() is not None

    def _forget(self) -> None:
        self.outcome, self._perceptual = None, None

    # ---- the target image ---------------------------------------------------------------------------
    def _prepare(self, action: OpenInvertImage) -> Callable:
        engine, model_path, generation = self.engine(), self.state.model.path, self.state.model.generation
        cached = self._perceptual if self._perceptual and self._perceptual[0] == generation else None

        def prepare(_progress):
            from core.imaging import to_uint8
            from core.latents import prepare_image
            from training.image_inversion import perceptual_loss
            with engine.lock:
                resolution, white = engine.base_G.img_resolution, engine.base_G.options.white_back
            target, info = prepare_image(action.path, resolution, white, action.frame)
            features, loss = cached[1:] if cached else perceptual_loss(model_path, engine.device)
            return to_uint8(target[0]), info, (generation, features, loss)
        return prepare

    def _prepared(self, result) -> None:
        inv = self.state.invert
        inv.target, inv.target_info, perceptual = result
        if perceptual[0] == self.state.model.generation:
            self._perceptual, inv.loss_name = perceptual, perceptual[2]

    # ---- the inversion ------------------------------------------------------------------------------
    def _start_run(self, action: StartInversion) -> None:
        from training.inversion import InversionOptions
        s, engine = self.state, self.engine()
        if s.model.path is None:
            self._fail("invert: no model loaded")
            return
        if not isinstance(action.options, InversionOptions):
            self._fail("invert: bad options")
            return
        if action.camera == "viewport" and action.view is None:
            self._fail("invert: the viewport camera is missing")
            return
        self.count += 1
        name, model_path, generation = f"inversion {self.count}", s.model.path, s.model.generation
        cached = self._perceptual if self._perceptual and self._perceptual[0] == generation else None
        live = _Live()

        def run(progress):
            from core.cameras import frontal_label
            from training.image_inversion import invert_image, perceptual_loss, prepare_target
            with engine.lock:   # our own copy: the viewport renders on while we optimise
                base = engine.base_G
                G = copy.deepcopy(base)
            target = prepare_target(G, action.image, action.frame)
            perceptual = cached[1:] if cached else perceptual_loss(model_path, engine.device)
            if action.camera == "viewport":
                label = action.view.label(engine.device)[0]
            elif action.camera == "angles":
                label = frontal_label(G.options, None, engine.device, yaw=math.radians(action.yaw_deg),
                                      pitch=math.radians(action.pitch_deg))[0]
            else:
                label = None
            try:
                inverted = invert_image(G, target, action.options, label, perceptual, progress,
                                        network=model_path, on_best=live.on_best,
                                        on_start=lambda inverter: setattr(live, "inverter", inverter))
            except KeyboardInterrupt:   # stopped before the first projection step: nothing to keep
                raise Cancelled("stopped before the first step") from None
            result = inverted.result
            live.on_best(result.ws, result.camera.to(engine.device).view(1, 25), inverted.G, force=True)
            with engine.lock:
                if engine.base_G is not base:
                    raise StudioError("another model was loaded meanwhile: the result was dropped")
                engine.set_source(name, result.ws, inverted.G)
            return _Outcome(name, result, inverted.settings, generation)

        self.live = live
        self._begin_run(action, run, "starting")

    def _poll_run(self) -> None:
        job, inv = self.run_job, self.state.invert
        if job is None:
            return
        live = self.live
        inv.fraction, inv.message = job.progress.fraction, job.progress.message
        history = live.history()
        if len(history) != len(inv.losses):
            inv.losses = history
        with live.lock:
            if live.version != inv.preview_version and live.preview is not None:
                inv.preview, inv.preview_version = live.preview, live.version
        ended = self._end_run() if job.done else None
        if ended is not None:
            self._show(ended[1], ended[0])

    def _show(self, outcome: _Outcome, action: StartInversion) -> None:
        """Switch the viewport to the result: the latent source, and the camera it was fitted from."""
        s, res = self.state, outcome.result
        self.outcome = outcome
        phases = [phase for phase, _, _ in res.history]
        steps, tuned = sum(p in ("w", "w+") for p in phases), phases.count("tune")
        s.invert.result = {
            "name": outcome.name, "yaw_deg": math.degrees(res.yaw), "pitch_deg": math.degrees(res.pitch),
            "fov_deg": res.fov_deg, "loss": res.loss, "steps": steps, "tune_steps": tuned,
            "estimated": len(phases) > steps + tuned, "interrupted": res.interrupted,
            "tuned": res.G is not None, "camera": action.camera,
            "prepared": outcome.settings["image_preparation"]}
        self._view_result(outcome.name, action, res.yaw, res.pitch, res.fov_deg)
        stopped = " (stopped: best so far)" if res.interrupted else ""
        s.set_status(f"inversion done{stopped}: image loss {res.loss:.4f} after {steps} steps"
                     + (f" + {tuned} tuning steps" if tuned else "") + "; "
                     "the viewport shows the result")

    # ---- the camera check -------------------------------------------------------------------------
    def _estimate_run(self, action: EstimateInvertCamera) -> Callable:
        engine, generation = self.engine(), self.state.model.generation

        def run(progress):
            from app.invert_camera import estimate_view
            return *estimate_view(engine, action.image, action.frame, progress, action.search), generation, \
                (action.image, action.frame)
        return run

    def _view_run(self, action: PreviewInvertView) -> Callable:
        engine, generation = self.engine(), self.state.model.generation

        def run(_progress):
            from app.invert_camera import render_view
            return render_view(engine, action.yaw_deg, action.pitch_deg), generation, \
                (action.yaw_deg, action.pitch_deg)
        return run

    # ---- saving -------------------------------------------------------------------------------------
    def _start_save(self, action: SaveInversion) -> None:
        outcome = self.outcome
        if outcome is None:
            self._fail("save: no inversion result for the loaded model")
        elif action.what == "tuned" and outcome.result.G is None:
            self._fail("save tuned checkpoint: this result has no tuned weights (set tune steps > 0)")
        else:
            self.save_job = Job(f"save {action.what} {action.path}", lambda _progress: write_inversion(
                outcome.result, outcome.settings, action.what, action.path))
