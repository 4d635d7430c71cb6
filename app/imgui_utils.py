"""Small ImGui layout helpers: sizes in font units, a label column, a disabled scope, a table of rows."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from imgui_bundle import imgui

ERROR = imgui.ImVec4(1.0, 0.45, 0.4, 1.0)
"""Text colour of error lines."""
WARN = imgui.ImVec4(1.0, 0.8, 0.3, 1.0)
CLAMP = imgui.SliderFlags_.always_clamp
"""Slider/drag flag: a value typed in (Ctrl+click) is clamped to the range like a dragged one."""


def em(n: float = 1.0) -> float:
    """n times the current font size, in pixels (sizes never use pixel constants)."""
    return n * imgui.get_font_size()


def ellipsize(text: str, width: float) -> str:
    """The first line of `text`, shortened with '...' to fit `width` pixels in the current font."""
    line = text.splitlines()[0] if text else ""
    if imgui.calc_text_size(line).x <= width:
        return line
    lo, hi = 0, len(line)
    while lo < hi:   # the longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if imgui.calc_text_size(line[:mid] + "...").x <= width:
            lo = mid
        else:
            hi = mid - 1
    return line[:lo] + "..."


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


def wrapped(text: str, color: imgui.ImVec4) -> None:
    """Text in `color`, wrapped at the window's edge."""
    imgui.push_style_color(imgui.Col_.text, color)
    try:
        imgui.text_wrapped(text)
    finally:
        imgui.pop_style_color()


def hint(text: str) -> None:
    """Explanatory text in the disabled colour, wrapped at the window's edge."""
    wrapped(text, imgui.get_style_color_vec4(imgui.Col_.text_disabled))


def outcome_line(text: str, is_error: bool) -> None:
    """How an action a panel started ended, shown in that panel (errors in the error colour)."""
    if text and is_error:
        wrapped(text, ERROR)
    elif text:
        hint(text)


def buttons_width(*labels: str) -> float:
    """Width of a row of buttons with these labels (spacing between them included), for sizing the field
    before them (`item_width(-buttons_width(...))`)."""
    style = imgui.get_style()
    widths = [imgui.calc_text_size(label.split("##")[0]).x + 2 * style.frame_padding.x for label in labels]
    return sum(widths) + len(widths) * style.item_spacing.x


def info_table(rows: Iterable[tuple[str, str]], table_id: str = "info") -> None:
    """Two-column key/value table; the key column is as wide as its longest key up to 45 % of the
    width, and both columns wrap."""
    rows = list(rows)
    widest = max((imgui.calc_text_size(key).x for key, _ in rows), default=em(4))
    key_width = min(widest, 0.45 * imgui.get_content_region_avail().x)
    if imgui.begin_table(table_id, 2, imgui.TableFlags_.row_bg | imgui.TableFlags_.borders_inner_v):
        try:
            imgui.table_setup_column("key", imgui.TableColumnFlags_.width_fixed, key_width)
            imgui.table_setup_column("value")
            for key, value in rows:
                imgui.table_next_row()
                imgui.table_next_column()
                hint(key)
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
