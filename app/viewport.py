"""The viewport: shows the drawn frame and turns mouse input into camera moves.

Left-drag orbits (yaw/pitch about the look-at point, half a turn per viewport width), right- or
middle-drag pans the look-at point so the subject follows the cursor, the wheel dollies. Continuous
input marks the interaction active so the studio renders cheap previews until it settles.
"""
from __future__ import annotations

import math

from imgui_bundle import imgui

from app.display import FrameDisplay
from app.gl import texture_ref
from app.imgui_utils import em
from app.panel import Panel
from app.state import AppState

DOLLY_PER_WHEEL_STEP = 0.1


class Viewport(Panel):
    name = "Viewport"

    def __init__(self, display: FrameDisplay):
        super().__init__()
        self.display = display
        self.image_rect = (0.0, 0.0, 0.0)
        """(x, y, side) of the image on screen, for scripted input in tests."""

    def draw(self, state: AppState) -> None:
        avail = imgui.get_content_region_avail()
        side = max(int(min(avail.x, avail.y)), 16)
        target = self.display.draw(state.view, (side, side))
        cursor = imgui.get_cursor_pos()
        imgui.set_cursor_pos(imgui.ImVec2(cursor.x + (avail.x - side) / 2, cursor.y + (avail.y - side) / 2))
        top_left = imgui.get_cursor_screen_pos()
        self.image_rect = (top_left.x, top_left.y, float(side))
        start = imgui.get_cursor_pos()
        imgui.image(texture_ref(target.texture.id), imgui.ImVec2(side, side))
        imgui.set_cursor_pos(start)
        buttons = (imgui.ButtonFlags_.mouse_button_left | imgui.ButtonFlags_.mouse_button_right
                   | imgui.ButtonFlags_.mouse_button_middle)
        imgui.invisible_button("##viewport-input", imgui.ImVec2(side, side), buttons)
        self._handle_input(state, side)
        self._overlay(state, top_left)

    def _handle_input(self, state: AppState, side: int) -> None:
        io = imgui.get_io()
        active = imgui.is_item_active()
        state.interaction.dragging = active
        if active and (io.mouse_delta.x or io.mouse_delta.y):
            dx, dy = io.mouse_delta.x / side, io.mouse_delta.y / side
            if imgui.is_mouse_down(imgui.MouseButton_.left):
                state.camera.orbit(-dx * math.pi, -dy * math.pi)
            else:
                half_height = math.tan(math.radians(state.camera.fov_deg) / 2)
                state.camera.pan(-dx * 2 * half_height, dy * 2 * half_height)
            state.interaction.touch()
        if imgui.is_item_hovered() and io.mouse_wheel:
            state.camera.dolly(io.mouse_wheel * DOLLY_PER_WHEEL_STEP)
            state.interaction.touch()

    def _overlay(self, state: AppState, top_left: imgui.ImVec2) -> None:
        draw = imgui.get_window_draw_list()
        pad = em(0.5)
        f = self.display.frame
        if state.model.loading:
            lines = [f"loading {state.model.loading} ..."]
        elif state.model.path is None:
            lines = ["no model: open a checkpoint (Model panel, File menu or drop a file here)"]
        elif f is None:
            lines = ["rendering the first frame ..."]
        else:
            r = f.request
            quality = "SR" if f.image is not None else f"raw {r.resolution}px x{r.sample_scale:g} samples"
            lines = [f"{state.view.mode}  {quality}"] + ([f.error] if f.error else [])
        for i, line in enumerate(lines):
            pos = imgui.ImVec2(top_left.x + pad, top_left.y + pad + i * em(1.2))
            draw.add_text(imgui.ImVec2(pos.x + 1, pos.y + 1), 0xFF000000, line)
            draw.add_text(pos, 0xFFFFFFFF if i == 0 else 0xFF5050FF, line)
