"""Camera path panel: keyframes of the viewer camera (nerfstudio-style) for videos.

Add the current view, reorder or delete keyframes, jump to one, scrub along the smooth path
(core.camera_path: position, look-at and FOV interpolated) with the viewport following, save/load
JSON (the file `main.py video --path` reads) and render the path to MP4 from the Export panel.
"""
from __future__ import annotations

import math

from imgui_bundle import imgui

from app.files import FileField, shown_folder
from app.imgui_utils import disabled, ellipsize, help_marker, hint, outcome_line
from app.panel import Panel
from app.state import AppState
from core.camera_path import CameraPath, Keyframe
from core.errors import StudioError


class CameraPathPanel(Panel):
    name = "Camera path"
    default_open = False

    def __init__(self) -> None:
        super().__init__()
        self.file = FileField("camera_path.json", "any", ("Camera path (.json)", "*.json"), "Camera path file")
        self.outcome: tuple[str, bool] = ("", False)
        """How the last Save or Load ended (message, is an error), shown under the buttons."""

    def draw(self, state: AppState) -> None:
        p = state.camera_path
        if imgui.button("Add current view"):
            p.keyframes.append(Keyframe.from_orbit(state.camera))
        imgui.same_line()
        _, p.loop = imgui.checkbox("loop", p.loop)
        imgui.same_line()
        with disabled(not p.keyframes):
            if imgui.button("Clear"):
                p.keyframes.clear()
                p.preview = False
        for i, key in enumerate(list(p.keyframes)):
            imgui.push_id(i)
            try:
                self._row(state, i, key)
            finally:
                imgui.pop_id()
        imgui.separator()
        with disabled(not p.keyframes):
            _, p.preview = imgui.checkbox("preview", p.preview)
            imgui.same_line()
            changed, p.t = imgui.slider_float("t", p.t, 0.0, 1.0, "%.3f")
            if (changed or p.preview) and p.keyframes:
                p.preview = True
                preview(state)
        help_marker("Scrub the path; the viewport shows the interpolated camera while 'preview' is on.")
        self.file.draw("JSON file", state.output_dir)
        hint(f"Names without a folder are in {shown_folder(state.output_dir)}.")
        with disabled(not p.keyframes):
            if imgui.button("Save"):
                self.save(state)
        imgui.same_line()
        if imgui.button("Load"):
            self.load(state)
        outcome_line(*self.outcome)
        hint("Render it: Export panel, camera path 'keyframes'.")

    def _row(self, state: AppState, i: int, key: Keyframe) -> None:
        """Buttons first, then the keyframe (shortened to the room left; whole on hover)."""
        p = state.camera_path
        if imgui.small_button("view"):
            state.camera = key.to_orbit()
            p.preview = False
        imgui.same_line()
        with disabled(i == 0):
            if imgui.arrow_button("##up", imgui.Dir.up):
                p.keyframes[i - 1], p.keyframes[i] = p.keyframes[i], p.keyframes[i - 1]
        imgui.same_line()
        with disabled(i == len(p.keyframes) - 1):
            if imgui.arrow_button("##down", imgui.Dir.down):
                p.keyframes[i + 1], p.keyframes[i] = p.keyframes[i], p.keyframes[i + 1]
        imgui.same_line()
        if imgui.small_button("delete"):
            del p.keyframes[i]
        imgui.same_line()
        x, y, z = key.position
        text = f"{i}: ({x:+.2f}, {y:+.2f}, {z:+.2f}) fov {key.fov_deg:.1f} deg"
        shown = ellipsize(text, imgui.get_content_region_avail().x)
        imgui.text(shown)
        if shown != text and imgui.is_item_hovered():
            imgui.set_tooltip(text)

    def save(self, state: AppState) -> None:
        target = self.file.target(state.output_dir)
        try:
            state.camera_path.path().save(target)
            self.outcome = (f"saved camera path to {target}", False)
        except (StudioError, OSError) as e:
            self.outcome = (f"cannot save {target}: {e}", True)
        state.set_status(*self.outcome)

    def load(self, state: AppState) -> None:
        source = self.file.path(state.output_dir)
        try:
            path = CameraPath.load(source)
        except (StudioError, OSError) as e:
            self.outcome = (str(e), True)
        else:
            state.camera_path.keyframes, state.camera_path.loop = list(path.keyframes), path.loop
            self.outcome = (f"loaded {len(path.keyframes)} keyframes from {source}", False)
        state.set_status(*self.outcome)


def preview(state: AppState) -> None:
    """Put the viewport camera on the path at the scrubber's t."""
    path = state.camera_path.path()
    if path is not None:
        cam = path.sample(state.camera_path.t).to_orbit()
        if not (math.isclose(cam.yaw, state.camera.yaw) and cam.pivot == state.camera.pivot
                and math.isclose(cam.radius, state.camera.radius)):
            state.interaction.touch()
        state.camera = cam

