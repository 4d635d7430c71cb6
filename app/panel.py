"""Panel base class: a named ImGui window that draws itself from (and into) AppState.

Panels keep only widget-local data (text buffers, defaults); they never import other panels or hold
tensors. begin/end and the per-panel id scope are paired with try/finally.
"""
from __future__ import annotations

import logging

from imgui_bundle import imgui

from app.imgui_utils import em
from app.state import AppState

log = logging.getLogger(__name__)


class Panel:
    name = "Panel"
    default_open = True
    label_em = 8.0
    """Room for widget labels right of the fields, in font sizes (fields take the rest of the width)."""

    def __init__(self) -> None:
        self.open = self.default_open
        self.last_error: str | None = None
        """The last exception raised while drawing (also logged and shown in the status line)."""
        self.focus = False
        """Bring the panel to the front (its dock tab too) on the next frame."""
        self.item_rects: dict[str, tuple[float, float, float, float]] = {}
        """(x0, y0, x1, y1) on screen of widgets noted with `note_item`, for input scripted from outside."""

    def window(self, state: AppState) -> None:
        """Draw the panel's window if it is open (the Panels menu opens and hides it: docked tabs have no
        close box, which narrow tabs put under the pointer of a click meant for the next tab)."""
        if not self.open:
            return
        if self.focus:
            imgui.set_next_window_focus()
            self.focus = False
        expanded, _ = imgui.begin(self.name)
        try:
            if expanded:
                imgui.push_id(self.name)
                imgui.push_item_width(-em(self.label_em))
                try:
                    self.draw(state)
                except Exception as e:  # a panel bug must not take the studio (and unsaved work) down
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.exception("panel %s failed", self.name)
                    state.set_status(f"{self.name} panel: {self.last_error}", error=True)
                finally:
                    imgui.pop_item_width()
                    imgui.pop_id()
        finally:
            imgui.end()

    def draw(self, state: AppState) -> None:
        raise NotImplementedError

    def note_item(self, key: str) -> None:
        """Remember where the last widget was drawn (tests click it through the X server)."""
        lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
        self.item_rects[key] = (lo.x, lo.y, hi.x, hi.y)

    def update(self, state: AppState) -> None:
        """Per-frame work that must happen even while the panel is hidden (finishing jobs, polling)."""

    def close(self) -> None:
        """Release resources (textures, threads); most panels have none."""
