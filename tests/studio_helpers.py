"""Waiting for frames and comparing pictures: shared by the studio tests."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def load(path: Path) -> np.ndarray:
    """PNG -> [H, W, 3] int16 (room for differences)."""
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def assert_same_picture(shown: np.ndarray, reference: np.ndarray, what: str, tolerance: float = 1.0) -> None:
    """Equal up to `tolerance` levels per pixel, and clearly not a flip or mirror of the reference.

    Lossy videos pass a larger `tolerance`; the flip/mirror check compares mean differences, so it
    holds for them too."""
    assert shown.shape == reference.shape, f"{what}: {shown.shape} vs {reference.shape}"
    diff = np.abs(shown - reference)
    for name, other in (("upside down", reference[::-1]), ("mirrored", reference[:, ::-1])):
        assert np.abs(shown - other).mean() > 4 * max(diff.mean(), 0.1), f"{what} looks {name}"
    assert diff.max() <= tolerance, f"{what}: max difference {diff.max()} (mean {diff.mean():.3f})"


def run_until(studio, condition, what: str, limit: float) -> None:
    """Step UI frames until condition() holds; fails after `limit` seconds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"gave up waiting for {what}"
        studio.step()


def settle(studio, limit: float) -> np.ndarray:
    """The viewport's pixels once the progressive refinement has finished, int16."""
    run_until(studio, lambda: studio.settled, "the final frame", limit)
    return studio.capture_viewport().astype(np.int16)


def xdo(studio, *args) -> None:
    """Run xdotool against the X server ('WINDOW' stands for the studio's X window id)."""
    import os
    import subprocess

    import glfw
    window = str(glfw.get_x11_window(studio.window.handle))
    argv = [str(a).replace("WINDOW", window) for a in args]
    subprocess.run(["xdotool", *argv], check=True, env=dict(os.environ), timeout=30)


def click(studio, x: float, y: float, button: int = 1, frames: int = 3) -> None:
    """Move the pointer to window coordinates (x, y) and click there, through the X server."""
    xdo(studio, "mousemove", "--window", "WINDOW", int(x), int(y))
    for _ in range(frames):
        studio.step()
    xdo(studio, "click", button)
    for _ in range(frames):
        studio.step()


def centre_of(rect: tuple[float, float, float, float]) -> tuple[float, float]:
    x0, y0, x1, y1 = rect
    return (x0 + x1) / 2, (y0 + y1) / 2


# ---- what ImGui drew where ------------------------------------------------------------------------------

NUMERIC = {
    # name: (value argument, format argument or None, default format, components, (step argument, default),
    #        range arguments or None)
    "slider_float": (1, 4, "%.3f", 1, None, (2, 3)),
    "slider_int": (1, 4, "%d", 1, None, (2, 3)),
    "drag_float": (1, 5, "%.3f", 1, None, (3, 4)),
    "drag_int": (1, 5, "%d", 1, None, (3, 4)),
    "drag_float2": (1, 5, "%.3f", 2, None, (3, 4)),
    "drag_float3": (1, 5, "%.3f", 3, None, (3, 4)),
    "drag_int2": (1, 5, "%d", 2, None, (3, 4)),
    "input_int": (1, None, "%d", 1, (2, 1), None),
    "input_float": (1, 4, "%.3f", 1, (2, 0.0), None),
    "input_int2": (1, None, "%d", 2, None, None),
}
"""Widgets that show numbers in a frame, with what their argument lists hold."""
ITEMS = ("button", "small_button", "checkbox", "radio_button", "input_text", "combo", "begin_combo", "color_edit3",
         "selectable", "collapsing_header", "tree_node", "arrow_button", "separator_text", "plot_lines",
         "plot_histogram", "progress_bar", "image", "text", "text_disabled", "text_colored", "text_wrapped",
         "text_unformatted", "invisible_button")
"""Other widgets whose rectangle is recorded."""


def _shown_number(fmt: str, value) -> str:
    """The text an ImGui numeric widget shows for `value` with printf-style `fmt`."""
    if "%" not in fmt:
        return fmt
    return fmt % (round(value) if "d" in fmt.split("%", 1)[1][:3] else value)


class DrawnItems:
    """Records every widget the panels draw: its label, rectangle, the clip rectangle it was drawn under
    (the window's or table column's visible area) and, for numeric fields and combos, the width their
    shown text needs (for the value and for both ends of the field's range) against the width they
    have. Patches the imgui module while active; with `expand`, collapsing headers and tree nodes draw
    opened."""

    def __init__(self, expand: bool = True):
        self.expand = expand
        self.items: list[dict] = []
        self._saved: dict = {}

    def __enter__(self) -> DrawnItems:
        from imgui_bundle import imgui
        for name in list(NUMERIC) + list(ITEMS):
            original = getattr(imgui, name)
            self._saved[name] = original
            setattr(imgui, name, self._wrap(name, original))
        return self

    def __exit__(self, *exc) -> None:
        from imgui_bundle import imgui
        for name, original in self._saved.items():
            setattr(imgui, name, original)

    def _wrap(self, name: str, original):
        def widget(*args, **kwargs):
            from imgui_bundle import imgui
            if self.expand and name in ("collapsing_header", "tree_node"):
                imgui.set_next_item_open(True)
            result = original(*args, **kwargs)
            self._record(name, args, kwargs)
            return result
        return widget

    def _record(self, name: str, args: tuple, kwargs: dict) -> None:
        from imgui_bundle import imgui
        lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
        draw_list = imgui.get_window_draw_list()
        clip_lo, clip_hi = draw_list.get_clip_rect_min(), draw_list.get_clip_rect_max()
        label = args[0] if args and isinstance(args[0], str) else kwargs.get("label", "")
        item = {"kind": name, "label": label, "window": imgui.internal.get_current_window().name,
                "rect": (lo.x, lo.y, hi.x, hi.y), "clip": (clip_lo.x, clip_lo.y, clip_hi.x, clip_hi.y)}
        if name in NUMERIC or name == "combo":
            item["shown"], item["needed"], item["has"] = self._fit(name, label, args, kwargs, hi.x - lo.x)
        self.items.append(item)

    @staticmethod
    def _fit(name: str, label: str, args: tuple, kwargs: dict, width: float) -> tuple[str, float, float]:
        """(shown text, pixels it needs, pixels the field has) of a numeric field or combo."""
        from imgui_bundle import imgui
        style = imgui.get_style()
        visible = label.split("##")[0]
        label_w = imgui.calc_text_size(visible).x if visible else 0.0
        frame_w = width - (label_w + style.item_inner_spacing.x if label_w > 0 else 0.0)
        if name == "combo":
            items, current = args[2] if len(args) > 2 else kwargs["items"], args[1]
            shown = items[current] if 0 <= current < len(items) else ""
            return shown, imgui.calc_text_size(shown).x + 2 * style.frame_padding.x + imgui.get_frame_height(), \
                frame_w
        value_at, fmt_at, fmt, parts, step, limits = NUMERIC[name]
        value = args[value_at] if len(args) > value_at else kwargs.get("v")
        if fmt_at is not None:
            fmt = args[fmt_at] if len(args) > fmt_at else kwargs.get("format", fmt)
        values = list(value) if parts > 1 else [value]
        ends = []
        if limits is not None and len(args) > limits[1] and (args[limits[0]] or args[limits[1]]):
            ends = [args[limits[0]], args[limits[1]]]     # the field must also fit its range's ends
        if step is not None:
            step_value = args[step[0]] if len(args) > step[0] else kwargs.get("step", step[1])
            if step_value:   # '-' and '+' buttons right of the text
                frame_w -= 2 * (imgui.get_frame_height() + style.item_inner_spacing.x)
        each = (frame_w - (parts - 1) * style.item_inner_spacing.x) / parts
        shown = [_shown_number(fmt, v) for v in values]
        texts = shown + [_shown_number(fmt, v) for v in ends]
        needed = max(imgui.calc_text_size(t).x for t in texts) + 2 * style.frame_padding.x
        return " | ".join(shown), needed, each

    def problems(self, slack: float = 1.0) -> list[str]:
        """Widgets drawn partly outside their visible area, and fields too narrow for what they show."""
        out = []
        for it in self.items:
            x0, y0, x1, y1 = it["rect"]
            cx0, _, cx1, _ = it["clip"]
            where = f"{it['window']}: {it['kind']} {it['label']!r}"
            if x1 > cx1 + slack or x0 < cx0 - slack:
                out.append(f"{where} spans x {x0:.0f}..{x1:.0f}, visible {cx0:.0f}..{cx1:.0f}")
            if "needed" in it and it["needed"] > it["has"] + slack:
                out.append(f"{where} shows {it['shown']!r} in {it['has']:.0f} px, needs {it['needed']:.0f}")
        return sorted(set(out))


def quick_search():
    """A cheaper camera search (the estimator's own defaults take about a minute on the 2-core machine)."""
    from training.camera_estimate import CameraSearch
    return CameraSearch(yaws=12, elevations=(0.0, 20.0), latents=4, candidates=2, spacings=(6.0,), fine_steps=10,
                        line_offsets=(-10.0, 10.0), line_steps=10)
