"""Studio: the window, the GL display, the panels and the short per-frame loop around a Session.

One frame: poll input -> session.tick (animations, loads, every queued action through the session's
handler table, in which the studio registers the GL-side ones: frame PNG, screenshots, recording;
training; a finished render is uploaded) -> draw the panels (they edit AppState and append actions) ->
a recording's frame -> session.submit (the next progressive RenderRequest) -> swap. Torch runs on the worker and
job threads only; the UI thread never waits for it. At rest (frame final, nothing in flight) the loop
sleeps in glfw.wait_events_timeout and redraws only on input.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from imgui_bundle import imgui

from app.actions import (
    OpenModel,
    SaveFramePNG,
    SaveViewportPNG,
    SaveWindowPNG,
    StartRecording,
    StopRecording,
)
from app.backend import Backend
from app.camera_panel import CameraPanel
from app.display import Colorizer, FrameDisplay
from app.export_panel import ExportPanel
from app.files import close_dialogs, default_output_dir, dialog_pending, output_path, poll_dialogs
from app.gl import read_pixels
from app.interop import TextureUploader
from app.invert_panel import InvertPanel, is_image_path
from app.jobs import live_jobs
from app.latent_panel import LatentPanel
from app.layout import DOCK_GROUPS, LAYOUT_VERSION, build_dock_layout, status_bar
from app.log_panel import DequeHandler, LogPanel
from app.model_panel import ModelPanel
from app.path_panel import CameraPathPanel
from app.performance_panel import PerformancePanel
from app.planes_panel import PlanesPanel
from app.recorder import Recording
from app.render_panel import RenderPanel
from app.session import Session
from app.settings import Settings, config_dir
from app.state import AppState, StartView
from app.training_panel import TrainingPanel
from app.viewport import Viewport
from app.window import Window
from core import compute_process
from core.engine import Frame, RenderEngine
from core.errors import StudioError
from core.imaging import save_png
from core.worker import RenderWorker

log = logging.getLogger(__name__)
TITLE = "Triplane Studio"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default_model.ckpt"
MAX_FPS = 60.0
HISTORY = 240
IDLE_WAIT_S = 0.5
"""At rest the loop sleeps in glfw.wait_events_timeout for at most this long."""
DIALOG_POLL_S = 0.1
"""While a file dialog is open, the loop looks for its answer this often."""
IDLE_REDRAW_S = 2.0
"""At rest without input the window is redrawn this often (a watched run directory is polled)."""
SETTLE_FRAMES = 3
"""Frames drawn after input while at rest (hover highlights, tooltips)."""
CATCH_UP_S = 0.05
"""Per frame, at most this long goes to extra UI passes over queued input (Window.next_pass)."""
BUSY_FPS = 2.0
"""While a child process computes (core.compute_process: the camera estimate) and no input came for
INPUT_HOLD_S, the UI draws at most this often (input wakes it at once): on the 2-core machine a frame of the
software-GL UI costs the child about 40 ms (table01's estimate took 90 s beside a studio drawing at 10 fps, 61 s
at 2 fps; BENCHMARKS.md)."""
INPUT_HOLD_S = 1.0
"""After input the UI draws at its full rate for this long."""


class Studio:
    """The application. `step()` runs one frame; `run()` loops until the window closes."""

    def __init__(self, checkpoint: str | None = None, device: torch.device | None = None, *,
                 settings_dir: Path | None = None, window_size: tuple[int, int] | None = None,
                 start: StartView | None = None, output_dir: Path | None = None, backend: Backend | None = None):
        """`start`: latent, camera and view to apply once the first model has loaded; `output_dir`: the
        folder for relative file names this time (default: the saved one, else ~/TriplaneStudio);
        `backend`: where models open and render (default: this machine, app.backend.LocalBackend)."""
        self.settings_dir = settings_dir or config_dir()
        self.settings = Settings.load(self.settings_dir)
        if DEFAULT_MODEL.exists():
            self.settings.pinned = str(DEFAULT_MODEL)
        self.log_handler = DequeHandler()
        logging.getLogger().addHandler(self.log_handler)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu" and (os.cpu_count() or 1) > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # leave a core to the UI thread
        ini = self.settings_dir / "imgui.ini"
        self.needs_layout = not ini.exists() or self.settings.layout_version != LAYOUT_VERSION
        self._to_front: list[str] = []
        """Panels to bring to the front, one per frame, after the dock layout was (re)built."""
        self.window = Window(TITLE, window_size or self.settings.window_size, ini)
        self.state = AppState()
        self.state.perf.device = str(self.device)
        self.state.output_dir = str(output_dir or self.settings.output_dir or default_output_dir())
        self._start_output_dir = self.state.output_dir
        self.colorizer = Colorizer()
        self.uploader = TextureUploader(self.device)
        self.display = FrameDisplay(self.colorizer, self.uploader)
        self.session = Session(self.state, self.settings, self.device,
                               host_frames=not self.uploader.wants_device_frames, start=start, backend=backend)
        self.frames_shown = 0
        self.frame_count = 0
        self._last_tick = time.monotonic()
        self._events, self._input_at = -1, 0.0
        """Window.events seen last, and when it last changed (BUSY_FPS)."""
        self._shown_model = 0
        """model.generation of the frame on screen."""
        self.recorder = Recording()
        self.wait_when_idle = True
        """Sleep on GLFW events at rest (off: redraw continuously, for comparison benchmarks)."""
        self.screenshot_error: OSError | None = None
        self._shots: dict[str, str] = {}
        """'window' / 'viewport' -> PNG path, saved as displayed at the end of the frame."""
        self.session.handlers.update({
            SaveFramePNG: self._save_frame, SaveWindowPNG: lambda a: self._shots.update(window=a.path) or True,
            SaveViewportPNG: lambda a: self._shots.update(viewport=a.path) or True,
            StartRecording: lambda a: self.recorder.start(self.state, a.path) or True,
            StopRecording: lambda a: self.recorder.stop(self.state) or True})
        self._capture: bool | np.ndarray = False
        self.viewport = Viewport(self.display)
        self.export_panel = ExportPanel()
        self.invert_panel = InvertPanel()
        # in the order of their dock tabs (app.layout)
        self.panels = [ModelPanel(self.settings), LatentPanel(), CameraPanel(), RenderPanel(), PerformancePanel(),
                       LogPanel(self.log_handler), PlanesPanel(self.colorizer), self.invert_panel,
                       CameraPathPanel(), self.export_panel, TrainingPanel()]
        for panel in self.panels:
            panel.open = self.settings.open_panels.get(panel.name, panel.open)
        self._open_initial(checkpoint)

    # ---- model loading ------------------------------------------------------------------------------
    def _open_initial(self, checkpoint: str | None) -> None:
        if checkpoint is not None or DEFAULT_MODEL.exists():
            self.state.actions.append(OpenModel(checkpoint or str(DEFAULT_MODEL)))
        else:
            self.state.set_status(f"no model: {DEFAULT_MODEL.name} is not in assets/ yet; open a checkpoint "
                                  "(python main.py CHECKPOINT, the Model panel, or drop a file)", error=True)

    def _show(self, frame: Frame | None) -> None:
        """Upload a newer frame from the session (UI thread: GL)."""
        if frame is None:
            return
        self.display.show(frame)
        self.frames_shown += 1
        p, r = self.state.perf, frame.request
        p.frame_resolution = (f"neural {r.resolution}px x{r.sample_scale:g} samples"
                              + (f", SR {frame.image.shape[-1]}px" if frame.image is not None else ""))
        p.texture_path, p.texture_reason = self.uploader.path, self.uploader.reason

    @property
    def engine(self) -> RenderEngine | None:
        return self.session.engine

    @property
    def worker(self) -> RenderWorker | None:
        return self.session.worker

    @property
    def settled(self) -> bool:
        """True when input has come to rest and the frame on screen is the ladder's final rung."""
        return self.session.settled

    @property
    def latest_frame(self) -> Frame | None:
        return self.display.frame

    # ---- UI -----------------------------------------------------------------------------------------
    def _dockspace(self) -> None:
        viewport = imgui.get_main_viewport()
        dock_id = imgui.get_id("studio-dockspace")
        if self.needs_layout:
            self.needs_layout = False
            build_dock_layout(dock_id, viewport.work_size)
            self.settings.layout_version = LAYOUT_VERSION
            self._to_front = [group[0] for group in DOCK_GROUPS] + ["", ""]   # from the 3rd frame: docked by then
        if self._to_front:   # each column's first tab in front (ImGui brings one window forward per frame)
            name = self._to_front.pop()
            for panel in self.panels:
                panel.focus = panel.focus or panel.name == name
        imgui.dock_space_over_viewport(dock_id, viewport)

    def _menu(self) -> None:
        if not imgui.begin_main_menu_bar():
            return
        try:
            if imgui.begin_menu("File"):
                for path in self.settings.recent_entries():
                    if imgui.menu_item(path, "", False)[0]:
                        self.state.actions.append(OpenModel(path))
                imgui.separator()
                if imgui.menu_item("Save window as PNG", "", False)[0]:
                    name = f"studio-{time.strftime('%Y%m%d-%H%M%S')}.png"
                    self.state.actions.append(SaveWindowPNG(str(output_path(name, self.state.output_dir))))
                if imgui.menu_item("Quit", "", False)[0]:
                    import glfw
                    glfw.set_window_should_close(self.window.handle, True)
                imgui.end_menu()
            if imgui.begin_menu("Panels"):
                for panel in self.panels:
                    panel.open = imgui.menu_item(panel.name, "", panel.open)[1]
                imgui.end_menu()
        finally:
            imgui.end_main_menu_bar()

    def _status_bar(self) -> None:
        s = self.state
        busy = " | rendering ..." if self.worker is not None and self.worker.busy else ""
        job = f" | {s.job.message or s.job.name} {s.job.fraction:.0%}" if s.job.running else ""
        status_bar((s.status or "ready") + busy + job, s.status_is_error, s.status)

    def _draw_ui(self) -> None:
        self._menu()
        self._status_bar()
        self._dockspace()
        self.viewport.window(self.state)
        for panel in self.panels:
            panel.window(self.state)
        for panel in self.panels:
            panel.update(self.state)

    # ---- loop ---------------------------------------------------------------------------------------
    def step(self) -> None:
        """One UI frame (never blocks on torch)."""
        start = time.perf_counter()
        self.window.begin_frame()
        poll_dialogs()
        self._take_dropped()
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        if self.window.events != self._events:
            self._events, self._input_at = self.window.events, now
        frame = self.session.tick(dt)
        if frame is not None:
            self._show(frame)
            self._shown_model = self.state.model.generation
        self.display.stale = self.display.frame is not None and (
            self.state.model.loading is not None or self._shown_model != self.state.model.generation)
        view = self.state.view
        view.depth_shown = self.display.shown_depth_range(view) if self.display.frame is not None else None
        self._draw_ui()
        while self.window.input_pending() and time.perf_counter() - start < CATCH_UP_S:
            self.window.next_pass()     # typed text shows in this frame, not one character per frame
            self._draw_ui()
        self.recorder.update(self.state, self.display)
        self.session.submit()
        self.window.end_frame(before_swap=self._take_screenshot)
        self.frame_count += 1
        max_fps = self.state.view.max_fps if self.state.view.max_fps > 0 else MAX_FPS
        lull = compute_process.running() and now - self._input_at > INPUT_HOLD_S
        if lull:
            max_fps = min(max_fps, BUSY_FPS)
        elapsed = time.perf_counter() - start
        # Xvfb does not pace swaps: cap the frame rate ourselves (not while queued input waits)
        if elapsed < 1.0 / max_fps and not self.window.input_pending():
            if lull:
                self.window.wait_events(1.0 / max_fps - elapsed)
            else:
                time.sleep(1.0 / max_fps - elapsed)
        perf = self.state.perf
        perf.ui_frame_ms = (perf.ui_frame_ms + [(time.perf_counter() - start) * 1000])[-HISTORY:]

    def _take_dropped(self) -> None:
        """A dropped image goes to the Invert panel (brought to the front); anything else opens as a model."""
        paths = self.window.take_dropped()
        images = [p for p in paths if is_image_path(p)]
        models = [p for p in paths if not is_image_path(p)]
        if images:
            self.invert_panel.open_image(self.state, images[-1])
            self.invert_panel.open = self.invert_panel.focus = True
        if models:
            self.state.actions.append(OpenModel(models[-1]))

    # ---- GL-side action handlers (UI thread) ----------------------------------------------------------
    def _save_frame(self, action: SaveFramePNG) -> bool:
        s = self.state
        try:
            save_png(action.path, self.display.render_view(s.view, action.size))
            s.set_status(f"saved frame to {action.path}")
        except (OSError, ValueError) as e:
            s.set_status(f"cannot save {action.path}: {e}", error=True)
        return True

    @property
    def idle(self) -> bool:
        """Nothing changes unless the user acts: the frame is final and no work is in flight."""
        return (self.session.settled and not self.session.busy and not self.recorder.recording
                and self.display.frame is not None and not self.display.stale and not self.window.input_pending())

    def read_window(self) -> np.ndarray:
        """The back buffer as [H, W, 3] uint8 (call from before_swap, or after a step for the last frame)."""
        w, h = self.window.framebuffer_size
        return read_pixels(0, 0, w, h)

    def read_viewport(self) -> np.ndarray:
        """The viewport image's pixels as displayed in the back buffer, [side, side, 3] uint8."""
        x, y, side = self.viewport.image_rect
        (w, h), (fw, fh) = self.window.size, self.window.framebuffer_size
        sx, sy = fw / max(w, 1), fh / max(h, 1)
        x0, y0 = round(x * sx), round(y * sy)
        return self.read_window()[y0:y0 + round(side * sy), x0:x0 + round(side * sx)].copy()

    def capture_viewport(self) -> np.ndarray:
        """Run one UI frame and return the viewport's pixels as displayed in it (tests, scripts)."""
        self._capture = True
        self.step()
        pixels, self._capture = self._capture, False
        return pixels

    def _take_screenshot(self) -> None:
        if self._capture is True:
            self._capture = self.read_viewport()
        s, shots, self._shots = self.state, self._shots, {}
        for what, read in (("window", self.read_window), ("viewport", self.read_viewport)):
            path = shots.get(what)
            if not path:
                continue
            try:
                save_png(path, read())
                s.set_status(f"saved {what} to {path}")
            except OSError as e:
                self.screenshot_error = e
                s.set_status(f"cannot save {path}: {e}", error=True)

    def run(self, screenshot: str | None = None, frames: int = 60, timeout: float = 300.0,
            viewport: str | None = None, seconds: float | None = None) -> None:
        """Loop until the window closes (or `seconds` passed); with `screenshot` (window PNG) and/or
        `viewport` (viewport PNG, frame shown 1:1), run at least `frames` frames and until the view has
        settled (or `timeout` seconds passed), save the PNGs and return."""
        start = time.monotonic()
        if viewport:
            self.state.view.pixel_exact = True
        if screenshot or viewport:  # no tooltip wherever the pointer happens to rest
            self.state.view.probe = False
        capture = bool(screenshot or viewport)
        quiet_frames, last_step = 0, time.monotonic()
        while not self.window.should_close():
            if seconds is not None and time.monotonic() - start >= seconds:
                return
            if capture and self.frame_count >= frames and (
                    self.settled or self.state.model.path is None and self.session.load_job is None
                    or time.monotonic() - start > timeout):
                if self.state.model.path is None:   # nothing to show: say why instead of saving
                    raise StudioError(self.state.status or "no model could be opened")
                self.state.actions += [SaveWindowPNG(screenshot)] * bool(screenshot)
                self.state.actions += [SaveViewportPNG(viewport)] * bool(viewport)
                self.step()
                if self.screenshot_error is not None:
                    raise self.screenshot_error
                return
            if not capture and self.wait_when_idle and self.idle:
                # at rest: after a few frames for ImGui's hover states to catch up, sleep until input
                # arrives; without input redraw only every IDLE_REDRAW_S (run-directory polls)
                quiet_frames += 1
                if quiet_frames > SETTLE_FRAMES:
                    events = self.window.events
                    self.window.wait_events(DIALOG_POLL_S if dialog_pending() else IDLE_WAIT_S)
                    if self.window.events == events and not dialog_pending():
                        if time.monotonic() - last_step < IDLE_REDRAW_S:
                            continue
                    else:
                        quiet_frames = 0
            else:
                quiet_frames = 0
            last_step = time.monotonic()
            self.step()

    def close(self) -> None:
        """Remember window size and open panels, stop threads, release GL and the window."""
        self.settings.window_size = self.window.size
        self.settings.open_panels = {p.name: p.open for p in self.panels}
        if self.state.output_dir != self._start_output_dir:   # chosen in the Export panel
            self.settings.output_dir = self.state.output_dir
        self.settings.save(self.settings_dir)
        close_dialogs()
        for panel in self.panels:
            panel.close()
        self.recorder.close()
        self.session.close()
        for job in live_jobs():
            job.cancel()
            job.wait(60)
        logging.getLogger().removeHandler(self.log_handler)
        self.window.close()
