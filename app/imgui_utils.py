"""Small ImGui layout helpers: sizes in font units, a label column, a disabled scope, a table of rows."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from imgui_bundle import imgui


def em(n: float = 1.0) -> float:
    """n times the current font size, in pixels (sizes never use pixel constants)."""
    return n * imgui.get_font_size()


@contextlib.contextmanager
def disabled(flag: bool = True) -> Iterator[None]:
    imgui.begin_disabled(flag)
    try:
        yield
    finally:
        imgui.end_disabled()


@contextlib.contextmanager
def item_width(width: float) -> Iterator[None]:
    imgui.push_item_width(width)
    try:
        yield
    finally:
        imgui.pop_item_width()


def info_table(rows: Iterable[tuple[str, str]], table_id: str = "info") -> None:
    """Two-column key/value table."""
    if imgui.begin_table(table_id, 2, imgui.TableFlags_.row_bg | imgui.TableFlags_.borders_inner_v):
        try:
            imgui.table_setup_column("key", imgui.TableColumnFlags_.width_fixed, em(9))
            imgui.table_setup_column("value")
            for key, value in rows:
                imgui.table_next_row()
                imgui.table_next_column()
                imgui.text_disabled(key)
                imgui.table_next_column()
                imgui.text_wrapped(value)
        finally:
            imgui.end_table()


def help_marker(text: str) -> None:
    """A '(?)' that shows `text` on hover."""
    imgui.same_line()
    imgui.text_disabled("(?)")
    if imgui.is_item_hovered():
        imgui.set_tooltip(text)
