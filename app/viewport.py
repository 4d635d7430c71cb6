"""The viewport: shows the drawn frame and turns mouse input into camera moves.

Left-drag orbits (yaw/pitch about the look-at point, half a turn per image width), right- or
middle-drag pans the look-at point so the point under the cursor (at the look-at depth) follows it,
the wheel dollies. Continuous input marks the interaction active so the studio renders cheap previews
until it settles. With ViewState.pixel_exact the frame is shown 1:1 (one texel per screen pixel) when
it fits. A caption line above the image says what is shown; a frame of the previous model is greyed
while the next loads; depth views get a colour bar in scene units; hovering probes the texel.
"""
from __future__ import annotations

import math

from imgui_bundle import imgui

from app.display import FrameDisplay
from app.gl import show_target
from app.imgui_utils import ERROR, WARN, ellipsize, em
from app.panel import Panel
from app.state import DEPTH_FORMAT, AppState
from core.cameras import fov_to_focal

DOLLY_PER_WHEEL_STEP = 0.1
STALE_TINT = (0.45, 0.45, 0.45, 1.0)
"""Multiplier on a frame of the previous model while the next one loads."""


class Viewport(Panel):
    name = "Viewport"

    def __init__(self, display: FrameDisplay):
        super().__init__()
        self.display = display
        self.image_rect = (0.0, 0.0, 0.0)
        """(x, y, side) of the image on screen, for scripted input in tests."""
        self.last_probe: dict | None = None
        """What the pixel probe showed last (depth, opacity, rgb)."""

    def draw(self, state: AppState) -> None:
        self._caption(state)
        avail = imgui.get_content_region_avail()
        bar_height = em(2.6) if state.view.mode == "depth" and self.display.frame is not None else 0.0
        fit = max(int(min(avail.x, avail.y - bar_height)), 16)
        native = final_size(state)
        side = native if state.view.pixel_exact and 0 < native <= fit else fit
        target = self.display.draw(state.view, (side, side))
        corner = imgui.get_cursor_screen_pos()  # whole pixels: a 1:1 image must not straddle pixels
        top_left = imgui.ImVec2(math.floor(corner.x + (avail.x - side) / 2),
                                math.floor(corner.y + (avail.y - bar_height - side) / 2))
        imgui.set_cursor_screen_pos(top_left)
        self.image_rect = (top_left.x, top_left.y, float(side))
        show_target(target, side, side, tint=STALE_TINT if self.display.stale else None)
        self._split_handle(state, top_left, side)   # before the view's own button: it wins the hover
        imgui.set_cursor_screen_pos(top_left)
        buttons = (imgui.ButtonFlags_.mouse_button_left | imgui.ButtonFlags_.mouse_button_right
                   | imgui.ButtonFlags_.mouse_button_middle)
        imgui.invisible_button("##viewport-input", imgui.ImVec2(side, side), buttons)
        self._handle_input(state, side)
        if state.view.probe and imgui.is_item_hovered() and not imgui.is_item_active():
            self._probe(state, side)
        if bar_height:
            self._colorbar(state, top_left.x, side)

    def _split_handle(self, state: AppState, top_left: imgui.ImVec2, side: int) -> None:
        """In the raw | SR split view, dragging near the dividing line moves the line (not the camera)."""
        v, f = state.view, self.display.frame
        if not (v.mode == "image" and v.split and f is not None and f.image is not None):
            return
        imgui.set_cursor_screen_pos(imgui.ImVec2(top_left.x + v.split_pos * side - em(0.5), top_left.y))
        imgui.invisible_button("##split-line", imgui.ImVec2(em(1.0), side))
        self.note_item("split")
        if imgui.is_item_hovered() or imgui.is_item_active():
            imgui.set_mouse_cursor(imgui.MouseCursor_.resize_ew)
        if imgui.is_item_active():
            v.split_pos = min(max((imgui.get_io().mouse_pos.x - top_left.x) / side, 0.0), 1.0)

    def _handle_input(self, state: AppState, side: int) -> None:
        io = imgui.get_io()
        active = imgui.is_item_active()
        state.interaction.dragging = active
        if active and (io.mouse_delta.x or io.mouse_delta.y):
            dx, dy = io.mouse_delta.x / side, io.mouse_delta.y / side
            if imgui.is_mouse_down(imgui.MouseButton_.left):
                state.camera.orbit(-dx * math.pi, -dy * math.pi)
            else:
                # one viewport width spans radius / focal world units at the look-at point
                focal = fov_to_focal(state.camera.fov_deg)
                state.camera.pan(-dx / focal, dy / focal)
            state.interaction.touch()
        if imgui.is_item_hovered() and io.mouse_wheel:
            state.camera.dolly(io.mouse_wheel * DOLLY_PER_WHEEL_STEP)
            state.interaction.touch()

    def _caption(self, state: AppState) -> None:
        """One line above the image: what is shown, or why nothing current is (never drawn over it)."""
        f = self.display.frame
        if state.model.loading:
            text, color = f"loading {state.model.loading} ..." + (" (greyed: previous model)" if f else ""), WARN
        elif state.model.path is None:
            text, color = "no model: open a checkpoint (Model panel, File menu or drop a file here)", WARN
        elif f is None or self.display.stale:
            text, color = "rendering the first frame ...", WARN
        elif f.error:
            text, color = f.error, ERROR
        else:
            r = f.request
            quality = "SR" if f.image is not None else f"raw {r.resolution}px x{r.sample_scale:g} samples"
            text, color = f"{state.view.mode}  {quality}", None
        shown = ellipsize(text, imgui.get_content_region_avail().x)
        if color is None:
            imgui.text_disabled(shown)
        else:
            imgui.text_colored(color, shown)
        if imgui.is_item_hovered():
            imgui.set_tooltip(text)

    def _probe(self, state: AppState, side: int) -> None:
        """Tooltip with depth, opacity and colour of the texel under the cursor."""
        f = self.display.frame
        if f is None or self.display.stale:
            return
        x, y, _ = self.image_rect
        mouse = imgui.get_io().mouse_pos
        u, v = (mouse.x - x) / side, (mouse.y - y) / side
        if not (0 <= u < 1 and 0 <= v < 1):
            return
        probe = self.display.probe(state.view, u, v)
        self.last_probe = probe
        imgui.set_tooltip(f"depth {probe['depth']:.4f}  opacity {probe['opacity']:.3f}\n"
                          "colour " + " ".join(f"{c:d}" for c in probe["rgb"]))

    def _colorbar(self, state: AppState, x: float, width: int) -> None:
        """The depth colour map as a bar under the image, labelled with its range in scene units."""
        lo, hi = self.display.shown_depth_range(state.view)
        bar = self.display.colorbar(state.view, width)
        imgui.set_cursor_screen_pos(imgui.ImVec2(x, imgui.get_cursor_screen_pos().y + em(0.2)))
        show_target(bar, width, em(0.8))
        imgui.set_cursor_screen_pos(imgui.ImVec2(x, imgui.get_cursor_screen_pos().y))
        label = f"{DEPTH_FORMAT % lo} .. {DEPTH_FORMAT % hi}: depth in scene units (left = near)"
        imgui.text(ellipsize(label, width))


def final_size(state: AppState) -> int:
    """Side in texels of the refined image the view shows: SR output in image mode, else the neural
    resolution (previews are smaller and are scaled up to it, so the image never jumps in size)."""
    if state.model.path is None:
        return 0
    if state.view.mode == "image":
        return state.model.image_resolution
    return state.view.resolution or state.model.neural_resolution
