"""Export panel: mesh of the current latent and orbit/360/interpolation videos (core.mesh and
core.video, the code behind `main.py mesh|video`), PNG of the frame or the whole window, and screen
recording of the viewport to MP4.

Long exports run as jobs with a progress bar and Cancel; the UI stays live meanwhile.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from imgui_bundle import imgui

from app.display import FrameDisplay
from app.imgui_utils import disabled, em
from app.jobs import Job
from app.panel import Panel
from app.recorder import ScreenRecorder
from app.state import AppState
from core.engine import RenderEngine
from core.imaging import save_png

MESH_FORMATS = ("ply", "obj", "glb")
MESH_COLORS = ("decoder", "none")
MESH_RESOLUTIONS = (64, 128, 256, 384, 512)
VIDEO_PATHS = ("orbit", "360", "interp")
VIDEO_MODES = ("image", "image_raw", "image_depth")


def export_mesh(engine: RenderEngine, latent, path: Path, options, progress) -> Path:
    """Planes of `latent` (engine cache) -> iso-surface -> file; the same functions as `main.py mesh`."""
    from core.mesh import extract_mesh, write_mesh
    planes = engine.planes(latent)
    mesh = extract_mesh(engine.G, planes, engine.ws(latent), options, progress)
    if len(mesh.faces) == 0:
        raise ValueError(f"no surface at level {options.level}: try a lower iso level")
    return write_mesh(mesh, path)


class ExportPanel(Panel):
    name = "Export"

    def __init__(self, engine: Callable[[], RenderEngine | None], display: FrameDisplay):
        super().__init__()
        self.engine, self.display = engine, display
        self.mesh_path = "mesh.ply"
        self.mesh_res, self.mesh_level, self.mesh_crop, self.mesh_color = 2, 10.0, True, 0
        self.video_file = "orbit.mp4"
        self.video_kind, self.video_mode, self.video_frames, self.video_fps = 0, 0, 120, 30
        self.png_path = "frame.png"
        self.png_size = 512
        self.video_path = "recording.mp4"
        self.recorder = ScreenRecorder()
        self.job: Job | None = None

    def draw(self, state: AppState) -> None:
        engine = self.engine()
        busy = self.job is not None and not self.job.done
        imgui.separator_text("Mesh")
        with disabled(busy):
            _, self.mesh_path = imgui.input_text("file##mesh", self.mesh_path)
            _, self.mesh_res = imgui.combo("grid", self.mesh_res, [f"{r}^3" for r in MESH_RESOLUTIONS])
            _, self.mesh_level = imgui.drag_float("iso level", self.mesh_level, 0.1, -50.0, 100.0, "%.1f")
            _, self.mesh_crop = imgui.checkbox("crop box border", self.mesh_crop)
            imgui.same_line()
            imgui.set_next_item_width(em(7))
            _, self.mesh_color = imgui.combo("colour", self.mesh_color, MESH_COLORS)
        with disabled(busy or engine is None):
            if imgui.button("Export mesh"):
                self._start_mesh(state, engine)
        imgui.separator_text("Video")
        with disabled(busy):
            _, self.video_file = imgui.input_text("file##video", self.video_file)
            _, self.video_kind = imgui.combo("camera path", self.video_kind, VIDEO_PATHS)
            _, self.video_mode = imgui.combo("image", self.video_mode, VIDEO_MODES)
            _, (self.video_frames, self.video_fps) = imgui.input_int2("frames, fps",
                                                                       [self.video_frames, self.video_fps])
        with disabled(busy or engine is None):
            if imgui.button("Export video"):
                self._start_video(state, engine)
        imgui.text_disabled("interp: current seed to the Latent panel's second seed")
        self._job_status()
        imgui.separator_text("Images")
        with disabled(self.display.frame is None):
            _, self.png_path = imgui.input_text("file##png", self.png_path)
            imgui.set_next_item_width(em(6))
            _, self.png_size = imgui.input_int("px", self.png_size, 64)
            self.png_size = min(max(self.png_size, 16), 4096)
            if imgui.button("Save frame PNG"):
                self._save_frame(state)
        imgui.same_line()
        if imgui.button("Save window PNG"):
            state.screenshot_request = self.png_path
        imgui.separator_text("Screen recording")
        with disabled(self.recorder.recording):
            _, self.video_path = imgui.input_text("file##mp4", self.video_path)
        if not self.recorder.recording:
            with disabled(self.display.frame is None):
                if imgui.button("Record"):
                    try:
                        self.recorder.start(self.video_path)
                        state.set_status(f"recording the viewport to {self.video_path}")
                    except (OSError, RuntimeError, ValueError) as e:
                        state.set_status(f"cannot record to {self.video_path}: {e}", error=True)
        else:
            if imgui.button("Stop recording"):
                self._stop_recording(state)
            imgui.same_line()
            imgui.text(f"{self.recorder.frames} frames")

    def update(self, state: AppState) -> None:
        """Finish a done export job and add the view to a running recording."""
        self._finish_job(state)
        if self.recorder.due() and self.display.frame is not None:
            self.recorder.add(self.display.render_view(state.view, self.png_size - self.png_size % 16 or 16))

    def _start_mesh(self, state: AppState, engine: RenderEngine) -> None:
        from core.mesh import MeshOptions
        path = Path(self.mesh_path)
        if path.suffix.lstrip(".").lower() not in MESH_FORMATS:
            state.set_status(f"mesh file {path} must end in .ply, .obj or .glb", error=True)
            return
        options = MeshOptions(resolution=MESH_RESOLUTIONS[self.mesh_res], level=self.mesh_level,
                              crop_border=self.mesh_crop, color=MESH_COLORS[self.mesh_color])
        latent = state.latent.latent()
        self.job = Job("mesh export", lambda progress: export_mesh(engine, latent, path, options, progress))

    def _start_video(self, state: AppState, engine: RenderEngine) -> None:
        from core.video import VideoOptions, render_video
        lat, kind = state.latent, VIDEO_PATHS[self.video_kind]
        seeds = [lat.seed, lat.interp_seed] if kind == "interp" else [lat.seed]
        try:
            options = VideoOptions(path=kind, frames=int(self.video_frames), fps=float(self.video_fps),
                                   mode=VIDEO_MODES[self.video_mode], psi=lat.psi, cutoff=lat.cutoff or None,
                                   fov_deg=state.camera.fov_deg,
                                   neural_resolution=state.view.resolution or None)
        except ValueError as e:
            state.set_status(f"video: {e}", error=True)
            return
        path = Path(self.video_file)
        latent = lat.latent()

        def latent_ws(seed: int):
            """The on-screen latent (mixing, W directions, conditioning pose) with this seed."""
            return engine.ws(dataclasses.replace(latent, seed=seed, interp_seed=None, interp_t=0.0))
        self.job = Job("video export", lambda progress: render_video(engine.G, seeds, path, options,
                                                                      progress, latent_ws)[0])

    def _job_status(self) -> None:
        job = self.job
        if job is not None and not job.done:
            p = job.progress
            imgui.progress_bar(p.fraction, imgui.ImVec2(-em(6), 0), p.message or job.name)
            imgui.same_line()
            if imgui.button("Cancel"):
                job.cancel()

    def _finish_job(self, state: AppState) -> None:
        job = self.job
        if job is None or not job.done:
            return
        self.job = None
        if job.cancelled:
            state.set_status(f"{job.name} cancelled")
        elif job.error:
            state.set_status(f"{job.name} failed: {job.error}", error=True)
        else:
            state.set_status(f"{job.name}: wrote {job.result}")

    def _save_frame(self, state: AppState) -> None:
        try:
            save_png(self.png_path, self.display.render_view(state.view, self.png_size))
            state.set_status(f"saved frame to {self.png_path}")
        except (OSError, ValueError) as e:
            state.set_status(f"cannot save {self.png_path}: {e}", error=True)

    def _stop_recording(self, state: AppState) -> None:
        try:
            path = self.recorder.stop()
            state.set_status(f"saved recording to {path}" if path else "recording discarded (no frames)")
        except (OSError, RuntimeError) as e:
            state.set_status(f"recording failed: {e}", error=True)

    def close(self) -> None:
        if self.recorder.recording:
            self.recorder.stop()
        if self.job is not None:
            self.job.cancel()
