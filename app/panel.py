"""Panel base class: a named ImGui window that draws itself from (and into) AppState.

Panels keep only widget-local data (text buffers, defaults); they never import other panels or hold
tensors. begin/end and the per-panel id scope are paired with try/finally.
"""
from __future__ import annotations

from imgui_bundle import imgui

from app.state import AppState


class Panel:
    name = "Panel"
    default_open = True

    def __init__(self) -> None:
        self.open = self.default_open

    def window(self, state: AppState) -> None:
        """Draw the panel's window if it is open (the close button hides it)."""
        if not self.open:
            return
        expanded, still_open = imgui.begin(self.name, True)
        try:
            if expanded:
                imgui.push_id(self.name)
                try:
                    self.draw(state)
                finally:
                    imgui.pop_id()
        finally:
            imgui.end()
        self.open = bool(still_open)

    def draw(self, state: AppState) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (textures, threads); most panels have none."""
