"""Export panel: mesh of the current latent (optionally decimated, with a UV atlas and a baked texture),
videos of exactly what is on screen (latent, render settings, camera or keyframe path; core.video, the
code behind `main.py video`), PNG of the frame and of the whole window (separate files), and screen
recording of the viewport to MP4.

Exports are actions run by the session on a job thread, with a progress bar and Cancel here.
"""
from __future__ import annotations

import dataclasses

from imgui_bundle import imgui

from app.actions import (
    VIDEO_PATHS,
    CancelJob,
    ExportMesh,
    ExportVideo,
    SaveFramePNG,
    SaveWindowPNG,
    StartRecording,
    StopRecording,
)
from app.files import FileField
from app.imgui_utils import CLAMP, disabled, em, hint, outcome_line
from app.panel import Panel
from app.state import AppState, final_request

MESH_FORMATS = ("ply", "obj", "glb")
MESH_COLORS = ("decoder", "none")
MESH_RESOLUTIONS = (64, 128, 256, 384, 512)
MESH_FACES = (None, 10_000, 25_000, 50_000, 100_000, 200_000)
"""Decimation targets offered (None: keep every marching-cubes face)."""
TEXTURE_SIZES = (None, 512, 1024, 2048, 4096)
"""Base-colour texture sides offered (None: vertex colours)."""
TEXTURE_SOURCES = ("decoder", "views")
VIDEO_MODES = ("image", "image_raw", "image_depth")


class ExportPanel(Panel):
    name = "Export"

    def __init__(self) -> None:
        super().__init__()
        self.folder = FileField("", "folder", title="Output folder")
        self.mesh_file = FileField("mesh.ply", "save", ("Meshes", "*.ply *.obj *.glb"), "Save the mesh")
        self.mesh_res, self.mesh_level, self.mesh_crop, self.mesh_color = 2, 10.0, True, 0
        self.mesh_faces, self.mesh_texture, self.mesh_texture_from = 0, 0, 0
        self.video_file = FileField("orbit.mp4", "save", ("MP4 video", "*.mp4"), "Save the video")
        self.video_kind, self.video_mode, self.video_frames, self.video_fps = 0, 0, 120, 30
        self.png_file = FileField("frame.png", "save", ("PNG image", "*.png"), "Save the frame")
        self.png_size = 512
        self.window_png_file = FileField("window.png", "save", ("PNG image", "*.png"), "Save the window")
        self.recording_file = FileField("recording.mp4", "save", ("MP4 video", "*.mp4"), "Record the view")

    def draw(self, state: AppState) -> None:
        loaded = state.model.path is not None
        busy = state.job.running
        self._output_folder(state)
        imgui.separator_text("Mesh")
        with disabled(busy):
            self.mesh_file.draw("file##mesh", state.output_dir)
            _, self.mesh_res = imgui.combo("grid", self.mesh_res, [f"{r}^3" for r in MESH_RESOLUTIONS])
            _, self.mesh_level = imgui.drag_float("iso level", self.mesh_level, 0.1, -50.0, 100.0, "%.1f")
            _, self.mesh_crop = imgui.checkbox("crop box border", self.mesh_crop)
            imgui.same_line()
            imgui.set_next_item_width(em(7))
            _, self.mesh_color = imgui.combo("colour", self.mesh_color, MESH_COLORS)
            _, self.mesh_faces = imgui.combo("faces", self.mesh_faces,
                                             ["all"] + [f"{n // 1000}k" for n in MESH_FACES[1:]])
            _, self.mesh_texture = imgui.combo("texture", self.mesh_texture,
                                               ["none (vertex colours)"] + [f"{n}^2" for n in TEXTURE_SIZES[1:]])
            if self.mesh_texture:
                imgui.same_line()
                imgui.set_next_item_width(em(7))
                _, self.mesh_texture_from = imgui.combo("from", self.mesh_texture_from, TEXTURE_SOURCES)
        with disabled(busy or not loaded):
            if imgui.button("Export mesh"):
                self.export_mesh(state)
        imgui.separator_text("Video")
        with disabled(busy):
            self.video_file.draw("file##video", state.output_dir)
            _, self.video_kind = imgui.combo("camera path", self.video_kind, VIDEO_PATHS)
            _, self.video_mode = imgui.combo("image", self.video_mode, VIDEO_MODES)
            _, (self.video_frames, self.video_fps) = imgui.input_int2("frames, fps",
                                                                       [self.video_frames, self.video_fps])
        with disabled(busy or not loaded):
            if imgui.button("Export video"):
                self.export_video(state)
        hint("The on-screen latent and render settings; orbit/360 around the on-screen view, keyframes from "
             "the Camera path panel, interp: to the Latent panel's second seed.")
        self._job_status(state)
        if state.job.outcome_of in (ExportMesh.__name__, ExportVideo.__name__) and not state.job.running:
            outcome_line(state.job.outcome, state.job.outcome_error)
        imgui.separator_text("Images")
        with disabled(not loaded):
            self.png_file.draw("file##png", state.output_dir)
            _, self.png_size = imgui.drag_int("size", self.png_size, 4.0, 16, 4096, "%d px", CLAMP)
            if imgui.button("Save frame PNG"):
                state.actions.append(SaveFramePNG(str(self.png_file.target(state.output_dir)), self.png_size))
        self.window_png_file.draw("file##window", state.output_dir)
        if imgui.button("Save window PNG"):
            state.actions.append(SaveWindowPNG(str(self.window_png_file.target(state.output_dir))))
        imgui.separator_text("Screen recording")
        r = state.recording
        with disabled(r.active):
            self.recording_file.draw("file##mp4", state.output_dir)
        if not r.active:
            with disabled(not loaded):
                if imgui.button("Record"):
                    state.actions.append(StartRecording(str(self.recording_file.target(state.output_dir))))
        else:
            if imgui.button("Stop recording"):
                state.actions.append(StopRecording())
            imgui.same_line()
            imgui.text(f"{r.frames} frames")

    def export_mesh(self, state: AppState) -> None:
        from core.mesh import TEXTURED_FORMATS, MeshOptions
        texture = TEXTURE_SIZES[self.mesh_texture]
        path = self.mesh_file.target(state.output_dir)
        if texture is not None and path.suffix.lstrip(".").lower() not in TEXTURED_FORMATS:
            state.set_status("mesh: a texture needs a .glb or .obj file (PLY keeps vertex colours)", error=True)
            return
        options = MeshOptions(resolution=MESH_RESOLUTIONS[self.mesh_res], level=self.mesh_level,
                              crop_border=self.mesh_crop, color=MESH_COLORS[self.mesh_color],
                              faces=MESH_FACES[self.mesh_faces], texture=texture,
                              texture_from=TEXTURE_SOURCES[self.mesh_texture_from])
        state.actions.append(ExportMesh(path, state.latent.latent(), options))

    def export_video(self, state: AppState) -> None:
        kind = VIDEO_PATHS[self.video_kind]
        keyframes = None
        if kind == "keyframes":
            keyframes = state.camera_path.path()
            if keyframes is None:
                state.set_status("video: the camera path needs at least one keyframe (Camera path panel)",
                                 error=True)
                return
        state.actions.append(ExportVideo(
            self.video_file.target(state.output_dir), final_request(state), dataclasses.replace(state.camera), kind,
            int(self.video_frames), float(self.video_fps), VIDEO_MODES[self.video_mode], keyframes,
            int(state.latent.interp_seed), state.view.depth_mask))

    def _output_folder(self, state: AppState) -> None:
        """Where relative file names go (per user; remembered in the settings)."""
        self.folder.text = self.folder.text or state.output_dir
        self.folder.draw("output folder", None)
        if self.folder.text.strip():
            state.output_dir = self.folder.text.strip()
        self.note_item("output folder")
        hint("File names below without a folder are saved in this folder.")

    @staticmethod
    def _job_status(state: AppState) -> None:
        job = state.job
        if job.running:
            imgui.progress_bar(job.fraction, imgui.ImVec2(-em(6), 0), job.message or job.name)
            imgui.same_line()
            if imgui.button("Cancel"):
                state.actions.append(CancelJob())
