"""Studio: the window, AppState, panels, the render worker, and the short per-frame loop.

One frame: poll input -> take a finished render (upload it) -> draw the panels (they edit AppState) ->
submit the next progressive RenderRequest if it differs from what is on screen -> swap. Torch runs on
the worker and job threads only; the UI thread never waits for it, and the last finished frame stays
on screen until a newer one arrives.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from imgui_bundle import imgui

from app.camera_panel import CameraPanel
from app.display import Colorizer, FrameDisplay
from app.export_panel import ExportPanel
from app.gl import read_pixels
from app.interop import TextureUploader
from app.jobs import Job, live_jobs
from app.latent_panel import LatentPanel
from app.log_panel import DequeHandler, LogPanel
from app.model_panel import ModelPanel
from app.performance_panel import PerformancePanel
from app.planes_panel import PlanesPanel
from app.render_panel import RenderPanel
from app.settings import Settings, config_dir
from app.state import AppState, next_request, render_ladder, request_key
from app.training_panel import TrainingPanel
from app.viewport import Viewport
from app.window import Window
from core.cameras import OrbitCamera
from core.checkpoint import load_generator, resolve_checkpoint
from core.engine import Frame, RenderEngine, RenderRequest
from core.imaging import save_png
from core.worker import RenderWorker

log = logging.getLogger(__name__)
TITLE = "Triplane Studio"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "default_model.ckpt"
MAX_FPS = 60.0
HISTORY = 240


def describe_model(G, path: Path) -> dict[str, str]:
    """Rows for the model panel."""
    from core.describe import model_rows
    return model_rows(G, path)


class Studio:
    """The application. `step()` runs one frame; `run()` loops until the window closes."""

    def __init__(self, checkpoint: str | None = None, device: torch.device | None = None, *,
                 settings_dir: Path | None = None, window_size: tuple[int, int] | None = None):
        self.settings_dir = settings_dir or config_dir()
        self.settings = Settings.load(self.settings_dir)
        self.log_handler = DequeHandler()
        logging.getLogger().addHandler(self.log_handler)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu" and (os.cpu_count() or 1) > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # leave a core to the UI thread
        ini = self.settings_dir / "imgui.ini"
        self.needs_layout = not ini.exists()
        self.window = Window(TITLE, window_size or self.settings.window_size, ini)
        self.state = AppState()
        self.state.perf.device = str(self.device)
        self.colorizer = Colorizer()
        self.uploader = TextureUploader(self.device)
        self.display = FrameDisplay(self.colorizer, self.uploader)
        self.engine: RenderEngine | None = None
        self.worker: RenderWorker | None = None
        self.load_job: Job | None = None
        self.generation = 0
        self.model_generation_start = 0
        self.shown: RenderRequest | None = None
        self.submitted: RenderRequest | None = None
        self.frames_shown = 0
        self.frame_count = 0
        self.screenshot_error: OSError | None = None
        self.viewport = Viewport(self.display)
        engine_ref = lambda: self.engine  # noqa: E731  (panels see the current engine, or None)
        self.export_panel = ExportPanel(engine_ref, self.display)
        self.panels = [ModelPanel(self.settings), CameraPanel(), LatentPanel(engine_ref), RenderPanel(),
                       PlanesPanel(engine_ref, self.colorizer), TrainingPanel(), self.export_panel,
                       PerformancePanel(), LogPanel(self.log_handler)]
        for panel in self.panels:
            panel.open = self.settings.open_panels.get(panel.name, panel.open)
        self._open_initial(checkpoint)

    # ---- model loading ------------------------------------------------------------------------------
    def _open_initial(self, checkpoint: str | None) -> None:
        if checkpoint is not None:
            self.state.model.open_request = checkpoint
        elif DEFAULT_MODEL.exists():
            self.state.model.open_request = str(DEFAULT_MODEL)
        else:
            self.state.set_status(f"no model: {DEFAULT_MODEL.name} is not in assets/ yet; open a checkpoint "
                                  "(python main.py CHECKPOINT, the Model panel, or drop a file)", error=True)

    def _poll_load(self) -> None:
        m = self.state.model
        if m.open_request and self.load_job is None:
            path, keep_view, m.open_request = m.open_request, m.keep_view, None
            m.loading = path
            device = self.device

            def load(_progress):
                resolved = resolve_checkpoint(path)
                G = load_generator(resolved, device=device)
                if self.engine is None:
                    self.engine = RenderEngine(G, device, host_frames=not self.uploader.wants_device_frames)
                else:
                    self.engine.set_generator(G, device)  # waits for a render in flight, off the UI thread
                return resolved, G, keep_view
            self.load_job = Job("load checkpoint", load)
        if self.load_job is not None and self.load_job.done:
            job, self.load_job = self.load_job, None
            m.loading = None
            if job.error:
                self.state.set_status(f"cannot open {job.name}: {job.error}", error=True)
                return
            self._model_loaded(*job.result)

    def _model_loaded(self, path: Path, G, keep_view: bool) -> None:
        m, s = self.state.model, self.state
        if self.worker is None:
            self.worker = RenderWorker(self.engine)
        m.path, m.info = str(path), describe_model(G, path)
        m.rendering_kwargs, m.num_ws = dict(G.rendering_kwargs), G.num_ws
        m.neural_resolution, m.generation = int(G.neural_rendering_resolution), m.generation + 1
        if not keep_view:
            s.camera = OrbitCamera.from_options(G.options)
        self.model_generation_start = self.generation + 1
        self.shown = self.submitted = None
        self.settings.add_recent(str(path))
        s.set_status(f"{'reloaded' if keep_view else 'opened'} {path}")
        log.info("opened %s on %s", path, self.device)

    # ---- frames -------------------------------------------------------------------------------------
    def _poll_frame(self) -> None:
        if self.worker is None:
            return
        frame = self.worker.latest()
        stamp = frame.request.generation if frame is not None else -1
        if frame is None or stamp < self.model_generation_start or (
                self.shown is not None and stamp <= self.shown.generation):
            return
        self.shown = frame.request
        if frame.error:
            self.state.set_status(f"render failed: {frame.error}", error=True)
            return
        self.display.show(frame)
        self.frames_shown += 1
        if self.state.status.startswith("render failed"):
            self.state.set_status("")
        p = self.state.perf
        p.last_timings, p.last_cache = dict(frame.timings), dict(frame.cache)
        p.render_ms = (p.render_ms + [frame.timings.get("total", 0.0) * 1000])[-HISTORY:]
        r = frame.request
        p.frame_resolution = (f"neural {r.resolution}px x{r.sample_scale:g} samples"
                              + (f", SR {self.display.resolution}px" if frame.image is not None else ""))
        p.texture_path, p.texture_reason = self.uploader.path, self.uploader.reason

    def _submit(self) -> None:
        if self.worker is None or self.state.model.loading:
            return
        wanted = next_request(render_ladder(self.state), self.shown)
        if wanted is None or (self.submitted is not None
                              and request_key(wanted) == request_key(self.submitted)):
            return
        self.generation += 1
        self.submitted = dataclasses.replace(wanted, generation=self.generation)
        self.worker.submit(self.submitted)

    @property
    def settled(self) -> bool:
        """True when input has come to rest and the frame on screen is the ladder's final rung."""
        return (self.worker is not None and self.shown is not None and not self.state.model.loading
                and self.load_job is None and not self.state.interaction.active()
                and next_request(render_ladder(self.state), self.shown) is None)

    @property
    def latest_frame(self) -> Frame | None:
        return self.display.frame

    # ---- UI -----------------------------------------------------------------------------------------
    def _dockspace(self) -> None:
        viewport = imgui.get_main_viewport()
        dock_id = imgui.get_id("studio-dockspace")
        if self.needs_layout:
            self.needs_layout = False
            internal = imgui.internal
            internal.dock_builder_remove_node(dock_id)
            internal.dock_builder_add_node(dock_id, internal.DockNodeFlagsPrivate_.dock_space)
            internal.dock_builder_set_node_size(dock_id, viewport.work_size)
            _, left, rest = internal.dock_builder_split_node_py(dock_id, imgui.Dir.left, 0.27)
            _, right, center = internal.dock_builder_split_node_py(rest, imgui.Dir.right, 0.33)
            _, left_bottom, left_top = internal.dock_builder_split_node_py(left, imgui.Dir.down, 0.3)
            _, right_bottom, right_top = internal.dock_builder_split_node_py(right, imgui.Dir.down, 0.45)
            for name in ("Model", "Latent", "Render", "Camera"):
                internal.dock_builder_dock_window(name, left_top)
            for name in ("Performance", "Log"):
                internal.dock_builder_dock_window(name, left_bottom)
            for name in ("Planes",):
                internal.dock_builder_dock_window(name, right_top)
            for name in ("Training", "Export"):
                internal.dock_builder_dock_window(name, right_bottom)
            internal.dock_builder_dock_window("Viewport", center)
            internal.dock_builder_finish(dock_id)
        imgui.dock_space_over_viewport(dock_id, viewport)

    def _menu(self) -> None:
        if not imgui.begin_main_menu_bar():
            return
        try:
            if imgui.begin_menu("File"):
                for path in self.settings.recent:
                    if imgui.menu_item(path, "", False)[0]:
                        self.state.model.open_request = path
                imgui.separator()
                if imgui.menu_item("Save window as PNG", "", False)[0]:
                    self.state.screenshot_request = f"studio-{time.strftime('%Y%m%d-%H%M%S')}.png"
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
        flags = imgui.WindowFlags_.no_scrollbar | imgui.WindowFlags_.no_saved_settings
        height = imgui.get_frame_height()
        if imgui.internal.begin_viewport_side_bar("##status", imgui.get_main_viewport(), imgui.Dir.down,
                                                   height, flags):
            s = self.state
            color = imgui.ImVec4(1.0, 0.45, 0.4, 1.0) if s.status_is_error else imgui.ImVec4(0.7, 0.75, 0.8, 1.0)
            busy = " | rendering ..." if self.worker is not None and self.worker.busy else ""
            imgui.text_colored(color, (s.status or "ready") + busy)
        imgui.end()

    def _draw_ui(self) -> None:
        self._menu()
        self._status_bar()
        self._dockspace()
        self.viewport.window(self.state)
        for panel in self.panels:
            panel.window(self.state)

    # ---- loop ---------------------------------------------------------------------------------------
    def step(self) -> None:
        """One UI frame (never blocks on torch)."""
        start = time.perf_counter()
        self.window.begin_frame()
        for path in self.window.take_dropped()[-1:]:
            self.state.model.open_request, self.state.model.keep_view = path, False
        self._poll_load()
        self._poll_frame()
        self._draw_ui()
        for panel in self.panels:
            panel.update(self.state)
        self._submit()
        self.window.end_frame(before_swap=self._take_screenshot)
        self.frame_count += 1
        elapsed = time.perf_counter() - start
        if elapsed < 1.0 / MAX_FPS:  # Xvfb does not pace swaps: cap the frame rate ourselves
            time.sleep(1.0 / MAX_FPS - elapsed)
        perf = self.state.perf
        perf.ui_frame_ms = (perf.ui_frame_ms + [(time.perf_counter() - start) * 1000])[-HISTORY:]

    def read_window(self) -> np.ndarray:
        """The back buffer as [H, W, 3] uint8 (call from before_swap, or after a step for the last frame)."""
        w, h = self.window.framebuffer_size
        return read_pixels(0, 0, w, h)

    def _take_screenshot(self) -> None:
        path, self.state.screenshot_request = self.state.screenshot_request, None
        if path:
            try:
                save_png(path, self.read_window())
                self.state.set_status(f"saved window to {path}")
            except OSError as e:
                self.screenshot_error = e
                self.state.set_status(f"cannot save {path}: {e}", error=True)

    def run(self, screenshot: str | None = None, frames: int = 60, timeout: float = 300.0) -> None:
        """Loop until the window closes; with `screenshot`, run at least `frames` frames and until the
        view has settled (or `timeout` seconds passed), save the window as PNG and return."""
        start = time.monotonic()
        while not self.window.should_close():
            if screenshot and self.frame_count >= frames and (
                    self.settled or self.state.model.path is None and self.load_job is None
                    or time.monotonic() - start > timeout):
                self.state.screenshot_request = screenshot
                self.step()
                if self.screenshot_error is not None:
                    raise self.screenshot_error
                return
            self.step()

    def close(self) -> None:
        """Remember window size and open panels, stop threads, release GL and the window."""
        self.settings.window_size = self.window.size
        self.settings.open_panels = {p.name: p.open for p in self.panels}
        self.settings.save(self.settings_dir)
        for panel in self.panels:
            panel.close()
        for job in live_jobs():
            job.cancel()
            job.wait(60)
        if self.worker is not None:
            self.worker.close()
        logging.getLogger().removeHandler(self.log_handler)
        self.window.close()
