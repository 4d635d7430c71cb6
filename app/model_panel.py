"""Model panel: open a checkpoint (path, recent list, reload) and show what it contains."""
from __future__ import annotations

from pathlib import Path

from imgui_bundle import imgui

from app.imgui_utils import disabled, em, info_table, item_width
from app.panel import Panel
from app.settings import Settings
from app.state import AppState


class ModelPanel(Panel):
    name = "Model"

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.path_text = ""

    def draw(self, state: AppState) -> None:
        m = state.model
        if m.path and not self.path_text:
            self.path_text = m.path
        with item_width(-em(7)):
            entered, self.path_text = imgui.input_text("##path", self.path_text,
                                                       imgui.InputTextFlags_.enter_returns_true)
        imgui.same_line()
        with disabled(bool(m.loading) or not self.path_text.strip()):
            if imgui.button("Open") or entered:
                m.open_request, m.keep_view = self.path_text.strip(), False
        imgui.same_line()
        with disabled(bool(m.loading) or m.path is None):
            if imgui.button("Reload"):
                m.open_request, m.keep_view = m.path, True
        if imgui.begin_combo("Recent", "", imgui.ComboFlags_.no_preview):
            try:
                for path in self.settings.recent:
                    if imgui.selectable(path, path == m.path)[0]:
                        self.path_text = path
                        m.open_request, m.keep_view = path, False
            finally:
                imgui.end_combo()
        imgui.text_disabled("A run directory opens its newest snapshot; files can be dropped on the window.")
        if m.loading:
            imgui.text(f"loading {Path(m.loading).name} ...")
        imgui.separator()
        if m.info:
            info_table(m.info.items(), "model-info")
            if m.rendering_kwargs and imgui.tree_node("rendering kwargs"):
                try:
                    info_table(((k, str(v)) for k, v in sorted(m.rendering_kwargs.items())), "rkw")
                finally:
                    imgui.tree_pop()
