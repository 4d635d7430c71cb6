"""Session: owns the backend (engine and render worker), model loading, the action queue with its one
handler table, and the training run.

The studio calls `tick(dt)` once per UI frame before drawing (animations advance, loads and actions
finish, training is polled, a newer frame is handed over) and `submit()` after the panels have edited
AppState (the next progressive RenderRequest goes to the worker). Nothing here blocks: torch runs on
the worker and on job threads, always through the engine and its lock, and only the UI thread assigns
the session's fields.

Every action a panel appends to AppState.actions goes through `handlers`, keyed by the action's type:
the session's own (open, cancel, engine jobs, planes, training, inversion) and the GL-side ones the
Studio registers. A handler returns False when its action cannot start yet (its slot is busy, no model
yet): the action then stays in AppState.actions, in order.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from app.actions import Action, CancelJob, ComputePCA, InspectPlanes, OpenModel, StartTraining, StopTraining
from app.backend import Backend, LoadedModel, LocalBackend
from app.handlers import ENGINE_HANDLERS
from app.jobs import Job
from app.settings import Settings
from app.state import AppState, StartView, next_request, render_ladder, request_key
from core.cameras import OrbitCamera
from core.engine import Frame, RenderEngine, RenderRequest
from training.runner import TrainingProcess

log = logging.getLogger(__name__)
HISTORY = 240
TRAINING_POLL_S = 1.0


def trainer_reason(log_tail: str, code: int) -> str:
    """The trainer's own one-line reason (its 'error: ...' line) for a failed run, else the exit code."""
    for line in reversed(log_tail.strip().splitlines()):
        if line.startswith("error: "):
            return line[len("error: "):]
    return f"exited with code {code}" + (f": {log_tail.strip().splitlines()[-1]}" if log_tail.strip() else "")


class Session:
    """Everything behind the panels except GL (textures and drawing stay with the Studio)."""

    def __init__(self, state: AppState, settings: Settings, device: torch.device, host_frames: bool = True,
                 start: StartView | None = None, backend: Backend | None = None):
        """`backend`: where models open and engine actions run (default: a RenderEngine on `device`)."""
        self.state, self.settings, self.device, self.start = state, settings, device, start
        self.backend: Backend = backend or LocalBackend(device, host_frames)
        self.load_job: Job | None = None
        self.action_job: Job | None = None
        self.job_action: Action | None = None
        """The action action_job runs."""
        self.inspect_job: Job | None = None
        self.inspect_next: InspectPlanes | None = None
        self.inspect_key: tuple | None = None
        """Plane inspections run beside the export queue; only the newest waiting one is kept."""
        self.generation = 0
        self.model_generation_start = 0
        self.shown: RenderRequest | None = None
        self.submitted: RenderRequest | None = None
        self.training = None
        """training.runner.TrainingProcess started from the studio."""
        self.inversion = self.backend.inversion(state)
        """The Invert panel's jobs (target image, inversion, saving its results)."""
        self.handlers: dict[type[Action], Callable[[Action], bool]] = {
            OpenModel: self._open, CancelJob: self._cancel, InspectPlanes: self._inspect,
            StartTraining: self._start_training, StopTraining: self._stop_training,
            **{kind: self._engine_job for kind in ENGINE_HANDLERS if kind is not InspectPlanes},
            **self.inversion.handlers()}
        """Action type -> handler(action) -> False to keep it queued; the Studio adds the GL-side ones."""
        self._anim_pos = 0.0
        self._next_training_poll = 0.0
        self._rungs: dict[int, str] = {}
        """generation -> refinement step (preview, raw, SR) of submitted requests."""

    # ---- per frame ----------------------------------------------------------------------------------
    def tick(self, dt: float) -> Frame | None:
        """Advance one UI frame; returns a newer frame to show (None: keep the one on screen)."""
        self._animate(dt)
        reloaded = self.backend.poll(self.state)
        if reloaded is not None and self.load_job is None:
            self._model_loaded(reloaded, True)
        self._poll_load()
        self._poll_action()
        self.inversion.poll()
        self._take_actions()
        self._poll_inspection()
        self._poll_training()
        return self._poll_frame()

    @property
    def engine(self) -> RenderEngine | None:
        return self.backend.engine

    @property
    def worker(self) -> Any:
        return self.backend.worker

    def _animate(self, dt: float) -> None:
        """Latent animation: seeds per second, interpolating in W between consecutive seeds (runs
        whichever panel is visible)."""
        lat = self.state.latent
        if not lat.animate:
            self._anim_pos = 0.0
            return
        self._anim_pos += lat.speed * max(dt, 0.0)
        step, self._anim_pos = int(self._anim_pos), self._anim_pos % 1.0
        lat.seed += step
        lat.interp_enabled, lat.interp_seed, lat.interp_t = True, lat.seed + 1, self._anim_pos
        self.state.interaction.touch()

    @property
    def busy(self) -> bool:
        """Anything in flight that needs frames to finish (the studio does not idle meanwhile)."""
        return (self.load_job is not None or self.action_job is not None
                or self.inspect_job is not None or self.inspect_next is not None
                or bool(self.state.actions) or (self.worker is not None and self.worker.busy)
                or self.state.latent.animate or self.inversion.busy
                or (self.training is not None and self.training.running))

    # ---- model loading ------------------------------------------------------------------------------
    def _open(self, action: OpenModel) -> bool:
        if [a for a in self.state.actions if isinstance(a, OpenModel)][-1] is not action:
            return True   # superseded by a newer open (say a newer training snapshot)
        if self.load_job is not None:
            return False
        m, backend = self.state.model, self.backend
        m.loading, m.error = action.path, ""
        self.load_job = Job(f"open {action.path}", lambda progress: (backend.load(action.path, progress),
                                                                     action.keep_view))
        return True

    def _poll_load(self) -> None:
        if self.load_job is None or not self.load_job.done:
            return
        m, job, self.load_job = self.state.model, self.load_job, None
        path, m.loading = m.loading, None
        if job.error:   # checkpoint errors name the file; others get it here
            m.error = "cannot open " + (job.error if path in job.error else f"{path}: {job.error}")
            self.state.set_status(m.error, error=True)
            return
        self._model_loaded(*job.result)

    def _model_loaded(self, loaded: LoadedModel, keep_view: bool) -> None:
        m, s, path = self.state.model, self.state, loaded.path
        self.backend.attach(loaded)
        previous_num_ws = m.num_ws
        m.path, m.info, m.options, m.num_ws = str(path), loaded.info, loaded.options, loaded.num_ws
        m.neural_resolution, m.generation = loaded.neural_resolution, m.generation + 1
        m.image_resolution = loaded.image_resolution
        s.fit_to_model(previous_num_ws)
        s.pca_ready = False
        self.inversion.model_changed()   # the engine dropped the inverted latent with the old weights
        if not keep_view:
            s.camera = OrbitCamera.from_options(loaded.options)
            if self.start is not None:
                self.start.apply(s, loaded.options)
                self.start = None
        self.model_generation_start = self.generation + 1
        self.shown = self.submitted = None
        if not keep_view and loaded.remember:  # reloads, hot-reloaded snapshots and a server's models do not
            self.settings.add_recent(str(path))
        s.set_status(f"{'reloaded' if keep_view else 'opened'} {path}")
        log.info("opened %s on %s", path, self.device)

    # ---- frames -------------------------------------------------------------------------------------
    def _poll_frame(self) -> Frame | None:
        if self.worker is None or self.state.model.loading:  # nothing becomes current while loading
            return None
        frame = self.worker.latest()
        stamp = frame.request.generation if frame is not None else -1
        if frame is None or stamp < self.model_generation_start or (
                self.shown is not None and stamp <= self.shown.generation):
            return None
        self.shown = frame.request
        if frame.error:
            self.state.set_status(f"render failed: {frame.error}", error=True)
            return None
        if self.state.status.startswith("render failed"):
            self.state.set_status("")
        p, total = self.state.perf, frame.timings.get("roundtrip", frame.timings.get("total", 0.0))
        p.last_timings, p.last_cache = dict(frame.timings), dict(frame.cache)
        p.render_ms = (p.render_ms + [total * 1000])[-HISTORY:]
        rung = self._rungs.pop(stamp, "raw")
        self._rungs = {g: r for g, r in self._rungs.items() if g > stamp}
        p.rung_ms[rung] = total * 1000
        p.rung_detail[rung] = (f"{frame.request.resolution}px x{frame.request.sample_scale:g}"
                               + (" + SR" if frame.image is not None else ""))
        if rung == "preview":
            self._adapt_preview(total)
        return frame

    def _adapt_preview(self, seconds: float) -> None:
        """Dynamic resolution: scale the preview's cost towards the target frame time (cost ~ pixels x
        samples, so each axis moves by the cube root of the ratio), within the floors."""
        v, p = self.state.view, self.state.perf
        if v.target_fps <= 0 or seconds <= 0:
            return
        ratio = (1.0 / v.target_fps) / seconds
        p.preview_scale = min(1.0, max(0.05, p.preview_scale * min(max(ratio, 0.25), 4.0) ** (1 / 3)))

    def submit(self) -> None:
        """Send the next rung of the progressive ladder unless it is already on screen or on its way."""
        if self.worker is None or self.state.model.loading:
            return
        wanted = next_request(render_ladder(self.state), self.shown)
        if wanted is None or (self.submitted is not None
                              and request_key(wanted) == request_key(self.submitted)):
            return
        self.generation += 1
        self.submitted = dataclasses.replace(wanted, generation=self.generation)
        self._rungs[self.generation] = ("SR" if wanted.superresolution else
                                        "preview" if self.state.interaction.active() and self.state.view.progressive
                                        else "raw")
        self.worker.submit(self.submitted)

    @property
    def settled(self) -> bool:
        """True when input has come to rest and the frame on screen is the ladder's final rung."""
        return (self.worker is not None and self.shown is not None and not self.state.model.loading
                and self.load_job is None and not self.state.interaction.active()
                and next_request(render_ladder(self.state), self.shown) is None)

    # ---- actions ------------------------------------------------------------------------------------
    def _take_actions(self) -> None:
        """Run the handler of every queued action, oldest first; those that cannot start yet stay queued."""
        s = self.state
        for action in list(s.actions):
            if not any(a is action for a in s.actions):   # dropped by an earlier handler
                continue
            handler = self.handlers.get(type(action))
            if handler is None:
                s.set_status(f"{action.name}: nothing handles it here", error=True)
            elif not handler(action):
                continue
            s.actions = [a for a in s.actions if a is not action]

    def _inspect(self, action: InspectPlanes) -> bool:
        self.inspect_next = action
        return True

    def _poll_inspection(self) -> None:
        job = self.inspect_job
        if job is not None and job.done:
            self.inspect_job = None
            self.state.planes = (self.inspect_key, job.error or job.result)
            if job.error:
                self.state.set_status(f"planes: {job.error}", error=True)
        if self.inspect_job is None and self.inspect_next is not None and self.worker is not None:
            action, backend, self.inspect_next = self.inspect_next, self.backend, None
            self.inspect_key = action.key
            self.inspect_job = Job("planes", lambda progress: backend.run(action, progress))

    def _engine_job(self, action: Action) -> bool:
        """Run an engine action (app.handlers through the backend) on the job thread, one at a time."""
        s, backend = self.state, self.backend
        if self.action_job is not None:
            return False
        if self.worker is None:
            s.set_status(f"{action.name}: no model loaded", error=True)
            return True
        self.action_job, self.job_action = Job(action.name, lambda progress: backend.run(action, progress)), action
        s.job.name, s.job.running, s.job.fraction, s.job.message = action.name, True, 0.0, ""
        return True

    def _cancel(self, action: CancelJob) -> bool:
        if self.action_job is not None:
            self.action_job.cancel()
        return True

    def _poll_action(self) -> None:
        job, s = self.action_job, self.state
        if job is None:
            return
        s.job.fraction, s.job.message = job.progress.fraction, job.progress.message
        if not job.done:
            return
        self.action_job = None
        s.job.running = False
        if job.cancelled:
            s.set_status(f"{job.name} cancelled")
        elif job.error:
            s.set_status(f"{job.name} failed: {job.error}", error=True)
        else:
            s.set_status(job.result)
            s.pca_ready = s.pca_ready or isinstance(self.job_action, ComputePCA)
        s.job.outcome_of, s.job.outcome, s.job.outcome_error = job.name, s.status, bool(job.error)

    # ---- training -----------------------------------------------------------------------------------
    def _start_training(self, action: StartTraining) -> bool:
        t = self.state.training
        if self.training is not None and self.training.running:
            self.state.set_status("a training run is already running", error=True)
            return True
        process = TrainingProcess(action.spec)
        try:
            process.start()
        except (OSError, RuntimeError) as e:
            t.error = f"cannot start training in {action.spec.run_dir}: {e}"
            self.state.set_status(t.error, error=True)
            return True
        self.training, t.error, t.exit_code = process, "", None
        t.run_dir, t.running = str(action.spec.run_dir), True
        self.state.set_status(f"training started; console log in {action.spec.run_dir}/train.log")
        return True

    def _stop_training(self, action: StopTraining) -> bool:
        process, s = self.training, self.state
        if self.action_job is not None:
            return False
        if process is not None and process.running:
            self.action_job = Job(action.name, lambda _p: process.stop() or "training stopped")
            self.job_action, s.job.name, s.job.running = action, "stopping training", True
        return True

    def _poll_training(self) -> None:
        process, t = self.training, self.state.training
        if process is None or time.monotonic() < self._next_training_poll:
            return
        self._next_training_poll = time.monotonic() + TRAINING_POLL_S
        code = process.returncode
        t.running = code is None
        if code is not None and t.exit_code is None:
            t.exit_code = code
            if code not in (0, 130, -2):  # 130 / SIGINT: stopped on request
                t.error = trainer_reason(process.log_tail(), code)
                self.state.set_status(f"training failed: {t.error}", error=True)

    # ---- shutdown -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker, cancel and join jobs, stop a training run started here."""
        for job in (self.action_job, self.load_job, self.inspect_job):
            if job is not None:
                job.cancel()
                job.wait(60)
        self.inversion.close()
        if self.training is not None and self.training.running:
            self.training.stop(timeout=15)
        self.backend.close()

