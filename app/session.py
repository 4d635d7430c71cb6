"""Session: owns the engine, the render worker, model loading, the action queue and the training run.

The studio calls `tick(dt)` once per UI frame before drawing (animations advance, loads and actions
finish, training is polled, a newer frame is handed over) and `submit()` after the panels have edited
AppState (the next progressive RenderRequest goes to the worker). Nothing here blocks: torch runs on
the worker and on job threads, always through the engine and its lock, and only the UI thread assigns
the session's fields.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch

from app.actions import Action, ComputePCA, InspectPlanes, StartTraining, StopTraining
from app.attached_inversion import AttachedInversion
from app.inversion import InversionJobs
from app.jobs import Job
from app.settings import Settings
from app.state import AppState, StartView, next_request, render_ladder, request_key
from core.cameras import OrbitCamera
from core.checkpoint import load_generator, resolve_checkpoint
from core.describe import model_rows
from core.engine import Frame, RenderEngine, RenderRequest
from core.worker import RenderWorker

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
                 start: StartView | None = None, remote=None):
        """`remote`: an app.attached.Attached (`--connect`): the server renders and runs the actions."""
        self.state, self.settings, self.device = state, settings, device
        self.remote = remote
        if remote is not None:
            remote.start(state)
        self.host_frames, self.start = host_frames, start
        self.engine: RenderEngine | None = None
        self.worker: RenderWorker | None = None
        self.load_job: Job | None = None
        self.action_job: Job | None = None
        self.actions: list[Action] = []
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
        self.inversion = InversionJobs(state) if remote is None else AttachedInversion(state, remote)
        """The Invert panel's jobs (target image, inversion, saving its results)."""
        self._anim_pos = 0.0
        self._next_training_poll = 0.0
        self._rungs: dict[int, str] = {}
        """generation -> refinement step (preview, raw, SR) of submitted requests."""

    # ---- per frame ----------------------------------------------------------------------------------
    def tick(self, dt: float) -> Frame | None:
        """Advance one UI frame; returns a newer frame to show (None: keep the one on screen)."""
        self._animate(dt)
        if self.remote is not None:
            self._poll_remote()
        self._poll_load()
        self._take_actions()
        self.inversion.poll(self.engine)
        self._poll_action()
        self._poll_training()
        return self._poll_frame()

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
        return (self.load_job is not None or self.action_job is not None or bool(self.actions)
                or self.inspect_job is not None or self.inspect_next is not None
                or bool(self.state.actions) or (self.worker is not None and self.worker.busy)
                or self.state.latent.animate or self.state.model.open_request is not None
                or self.inversion.busy
                or (self.training is not None and self.training.running))

    # ---- model loading ------------------------------------------------------------------------------
    def _poll_load(self) -> None:
        m = self.state.model
        if m.open_request and self.load_job is None:
            path, keep_view, m.open_request, m.keep_view = m.open_request, m.keep_view, None, False
            m.loading, m.error = path, ""
            device, engine, host_frames = self.device, self.engine, self.host_frames

            def load(_progress):
                """Off the UI thread; only the engine (under its lock) is touched here."""
                if self.remote is not None:
                    return (*self.remote.load(path), keep_view, self.remote)
                resolved = resolve_checkpoint(path)
                G = load_generator(resolved, device=device)
                if engine is None:
                    return resolved, G, keep_view, RenderEngine(G, device, host_frames=host_frames)
                engine.set_generator(G, device)  # waits for a render in flight
                return resolved, G, keep_view, engine
            self.load_job = Job(f"open {path}", load)
        if self.load_job is not None and self.load_job.done:
            job, self.load_job = self.load_job, None
            path, m.loading = m.loading, None
            if job.error:   # checkpoint errors name the file; others get it here
                m.error = "cannot open " + (job.error if path in job.error else f"{path}: {job.error}")
                self.state.set_status(m.error, error=True)
                return
            self._model_loaded(*job.result)

    def _model_loaded(self, path: Path, G, keep_view: bool, engine: RenderEngine) -> None:
        m, s = self.state.model, self.state
        self.engine = engine
        if self.worker is None:
            self.worker = self.remote.client if self.remote is not None else RenderWorker(engine)
        previous_num_ws = m.num_ws
        m.path, m.info = str(path), G.rows if self.remote is not None else model_rows(G, path)
        m.rendering_kwargs, m.num_ws = dict(G.rendering_kwargs), G.num_ws
        m.neural_resolution, m.generation = int(G.neural_rendering_resolution), m.generation + 1
        m.image_resolution = int(G.img_resolution)
        s.fit_to_model(previous_num_ws)
        s.pca_ready = False
        self.inversion.model_changed()   # the engine dropped the inverted latent with the old weights
        if not keep_view:
            s.camera = OrbitCamera.from_options(G.options)
            if self.start is not None:
                self.start.apply(s, G.options)
                self.start = None
        self.model_generation_start = self.generation + 1
        self.shown = self.submitted = None
        if not keep_view and self.remote is None:  # nor do the server's models
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
        """Move engine and training actions from AppState into the session's queue (UI actions stay
        for the studio)."""
        keep = []
        for action in self.state.actions:
            if isinstance(action, InspectPlanes):
                self.inspect_next = action
            elif self.inversion.take(action):
                pass
            elif hasattr(action, "run") or isinstance(action, (StartTraining, StopTraining)):
                self.actions.append(action)
            else:
                keep.append(action)
        self.state.actions = keep
        self._poll_inspection()

    def _poll_inspection(self) -> None:
        job = self.inspect_job
        if job is not None and job.done:
            self.inspect_job = None
            self.state.planes = (self.inspect_key, job.error or job.result)
            if job.error:
                self.state.set_status(f"planes: {job.error}", error=True)
        if self.inspect_job is None and self.inspect_next is not None and self.engine is not None:
            action, engine, self.inspect_next = self.inspect_next, self.engine, None
            self.inspect_key = action.key
            self.inspect_job = Job("planes", lambda progress: self._run(action, engine, progress))

    def _poll_action(self) -> None:
        job, s = self.action_job, self.state
        if job is not None:
            s.job.fraction, s.job.message = job.progress.fraction, job.progress.message
            if s.job.cancel:
                job.cancel()
            if not job.done:
                return
            self.action_job = None
            s.job.running, s.job.cancel = False, False
            if job.cancelled:
                s.set_status(f"{job.name} cancelled")
            elif job.error:
                s.set_status(f"{job.name} failed: {job.error}", error=True)
            else:
                s.set_status(job.result)
                if job.name == ComputePCA().name:
                    s.pca_ready = True
            s.job.outcome_of, s.job.outcome, s.job.outcome_error = job.name, s.status, bool(job.error)
        if not self.actions:
            return
        action = self.actions.pop(0)
        if isinstance(action, StartTraining):
            self._start_training(action)
            return
        if isinstance(action, StopTraining):
            process = self.training
            if process is not None and process.running:
                self.action_job = Job(action.name, lambda _p: process.stop() or "training stopped")
                s.job.name, s.job.running = "stopping training", True
            return
        engine = self.engine
        if engine is None:
            s.set_status(f"{action.name}: no model loaded", error=True)
            return
        self.action_job = Job(action.name, lambda progress: self._run(action, engine, progress))
        s.job.name, s.job.running, s.job.fraction, s.job.message = action.name, True, 0.0, ""

    def _run(self, action: Action, engine, progress):
        """An engine action on the local engine, or as a job on the server when attached."""
        return self.remote.run(action, progress) if self.remote is not None else action.run(engine, progress)

    def _poll_remote(self) -> None:
        """Attached: connection state and figures into AppState; a hot-reloaded served model shown."""
        self.remote.poll(self.state)
        model = self.remote.reloaded() if self.engine is not None and self.load_job is None else None
        if model is not None:
            self._model_loaded(self.state.model.path, model, True, self.remote)

    # ---- training -----------------------------------------------------------------------------------
    def _start_training(self, action: StartTraining) -> None:
        from training.runner import TrainingProcess
        t = self.state.training
        if self.training is not None and self.training.running:
            self.state.set_status("a training run is already running", error=True)
            return
        process = TrainingProcess(action.spec)
        try:
            process.start()
        except (OSError, RuntimeError) as e:
            t.error = f"cannot start training in {action.spec.run_dir}: {e}"
            self.state.set_status(t.error, error=True)
            return
        self.training, t.error, t.exit_code = process, "", None
        t.run_dir, t.running = str(action.spec.run_dir), True
        self.state.set_status(f"training started; console log in {action.spec.run_dir}/train.log")

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
        if self.worker is not None:
            self.worker.close()
        if self.remote is not None:
            self.remote.close()

