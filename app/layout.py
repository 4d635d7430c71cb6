"""The studio's window layout: the dock layout of the panels, the status bar and fitting the window to
the screen it opens on.

The viewport takes the centre; the panels sit in two columns whose widths are in font units (so that
labels fit at any screen size) and grow a little with wide screens. Each dock node holds at most four
short tabs, so tab labels are never shortened and no tab scrolls out of view. LAYOUT_VERSION goes up
when this layout changes: a saved layout of an older version is replaced once.
"""
from __future__ import annotations

from imgui_bundle import imgui

from app.imgui_utils import ellipsize, em

LAYOUT_VERSION = 2
LEFT_TOP = ("Model", "Latent", "Camera", "Render")
LEFT_BOTTOM = ("Performance", "Log")
RIGHT_TOP = ("Planes", "Invert", "Camera path")
RIGHT_BOTTOM = ("Export", "Training")
DOCK_GROUPS = (LEFT_TOP, LEFT_BOTTOM, RIGHT_TOP, RIGHT_BOTTOM)
"""Panel names per dock node; a panel shows when its tab is in front."""
COLUMN_EM = 29.0
"""Least width of each side column, in font sizes (the widest label and value rows need it)."""
COLUMN_SHARE = (0.22, 0.25)
"""Share of the window width the left and right columns take when that is wider than COLUMN_EM."""
MAX_COLUMN_SHARE = 0.34
"""Neither column takes more of the window than this (a narrow window keeps a usable viewport)."""
BOTTOM_SHARE = (0.3, 0.42)
"""Height share of the lower dock node in the left and right columns."""
FIRST_START_SHARE = 0.9
"""On first start (no saved size) the window takes this share of the screen's work area, but at least
FIRST_START_LEAST (or the whole work area, when that is smaller)."""
FIRST_START_LEAST = (1280, 720)
ERROR_COLOR = (1.0, 0.45, 0.4, 1.0)
STATUS_COLOR = (0.7, 0.75, 0.8, 1.0)


def column_widths(width: float, font_size: float) -> tuple[float, float]:
    """Left and right column widths in pixels for a window `width` pixels wide."""
    least = COLUMN_EM * font_size
    return tuple(min(max(least, share * width), MAX_COLUMN_SHARE * width) for share in COLUMN_SHARE)


def build_dock_layout(dock_id: int, size: imgui.ImVec2) -> None:
    """Replace the dock space's nodes by the studio's layout (first start, or a new LAYOUT_VERSION)."""
    internal = imgui.internal
    internal.dock_builder_remove_node(dock_id)
    internal.dock_builder_add_node(dock_id, internal.DockNodeFlagsPrivate_.dock_space)
    internal.dock_builder_set_node_size(dock_id, size)
    left_w, right_w = column_widths(size.x, imgui.get_font_size())
    _, left, rest = internal.dock_builder_split_node_py(dock_id, imgui.Dir.left, left_w / size.x)
    _, right, centre = internal.dock_builder_split_node_py(rest, imgui.Dir.right, right_w / (size.x - left_w))
    _, left_bottom, left_top = internal.dock_builder_split_node_py(left, imgui.Dir.down, BOTTOM_SHARE[0])
    _, right_bottom, right_top = internal.dock_builder_split_node_py(right, imgui.Dir.down, BOTTOM_SHARE[1])
    for node, names in zip((left_top, left_bottom, right_top, right_bottom), DOCK_GROUPS):
        for name in names:
            internal.dock_builder_dock_window(name, node)
    internal.dock_builder_dock_window("Viewport", centre)
    internal.dock_builder_finish(dock_id)


def status_bar(text: str, is_error: bool, hover_text: str = "") -> None:
    """One line along the window's bottom edge, drawn in a menu bar so that it is exactly a frame high
    and never cut off; a line too long for the window ends in '...' and shows whole on hover."""
    flags = (imgui.WindowFlags_.no_scrollbar | imgui.WindowFlags_.no_saved_settings
             | imgui.WindowFlags_.menu_bar)
    if imgui.internal.begin_viewport_side_bar("##status", imgui.get_main_viewport(), imgui.Dir.down,
                                               imgui.get_frame_height(), flags):
        if imgui.begin_menu_bar():
            try:
                color = imgui.ImVec4(*(ERROR_COLOR if is_error else STATUS_COLOR))
                shown = ellipsize(text, imgui.get_content_region_avail().x - em(0.5))
                imgui.text_colored(color, shown)
                if (shown != text or hover_text) and imgui.is_item_hovered():
                    imgui.begin_tooltip()
                    imgui.push_text_wrap_pos(em(40))
                    imgui.text_unformatted(hover_text or text)
                    imgui.pop_text_wrap_pos()
                    imgui.end_tooltip()
            finally:
                imgui.end_menu_bar()
    imgui.end()


def fit_to_workarea(size: tuple[int, int] | None, workarea: tuple[int, int, int, int],
                    frame: tuple[int, int, int, int] = (0, 0, 0, 0)) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a window of client `size` (None: first start) that fits, decorations
    `frame` (left, top, right, bottom) included, inside `workarea` (x, y, width, height), centred."""
    wx, wy, ww, wh = workarea
    left, top, right, bottom = frame
    room_w, room_h = max(ww - left - right, 320), max(wh - top - bottom, 240)
    if size is None:
        size = (max(round(room_w * FIRST_START_SHARE), FIRST_START_LEAST[0]),
                max(round(room_h * FIRST_START_SHARE), FIRST_START_LEAST[1]))
    w, h = min(int(size[0]), room_w), min(int(size[1]), room_h)
    return wx + left + (room_w - w) // 2, wy + top + (room_h - h) // 2, w, h
