"""Model panel: open a checkpoint (path, recent list, reload) and show what it contains.

The path field shows the model on screen: after every load (a hot-reloaded training snapshot too), and
after a failed open, whose reason is shown under the field."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from imgui_bundle import imgui

from app.actions import OpenModel
from app.files import FileField
from app.imgui_utils import buttons_width, disabled, hint, info_table, outcome_line
from app.panel import Panel
from app.settings import Settings
from app.state import AppState


class ModelPanel(Panel):
    name = "Model"

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.file = FileField("", "open", ("Checkpoints", "*.pkl *.ckpt *.pt"), "Open a checkpoint")
        self._was_loading = False

    def update(self, state: AppState) -> None:
        """When a load ends (opened, hot-reloaded or failed), the field shows the model on screen."""
        m = state.model
        if self._was_loading and not m.loading:
            self.file.text = m.path or ""
        self._was_loading = bool(m.loading) or any(isinstance(a, OpenModel) for a in state.actions)

    def draw(self, state: AppState) -> None:
        m = state.model
        self.file.draw("##path", None, imgui.get_content_region_avail().x - buttons_width("Open", "Reload"))
        self.item_rects["path"] = self.file.rect
        imgui.same_line()
        chosen = self.file.take_chosen()
        with disabled(bool(m.loading) or not self.file.text.strip()):
            if imgui.button("Open") or self.file.entered or chosen and not m.loading:
                state.actions.append(OpenModel(self.file.text.strip()))
        self.note_item("open")
        imgui.same_line()
        with disabled(bool(m.loading) or m.path is None):
            if imgui.button("Reload"):
                state.actions.append(OpenModel(m.path, keep_view=True))
        if not m.loading:
            outcome_line(m.error, True)
        if imgui.begin_combo("Recent", "", imgui.ComboFlags_.no_preview):
            try:
                for path in self.settings.recent_entries():
                    if imgui.selectable(path, path == m.path)[0]:
                        self.file.text = path
                        state.actions.append(OpenModel(path))
            finally:
                imgui.end_combo()
        hint("A run directory opens its newest snapshot; files can be dropped on the window.")
        if m.loading:
            imgui.text_wrapped(f"loading {Path(m.loading).name} ...")
        imgui.separator()
        if m.info:
            info_table(m.info.items(), "model-info")
            if imgui.tree_node("rendering options"):
                try:
                    info_table(((f.name, str(getattr(m.options, f.name))) for f in fields(m.options)), "rkw")
                finally:
                    imgui.tree_pop()
