"""The studio's layout at common screen sizes, each on its own Xvfb screen of that size: the window fits
the screen, every panel's widgets lie inside the area they are drawn in (no clipped label, value or
unit), tab labels are whole and no tab scrolls away, the status bar is whole at the bottom edge.

Checked on what ImGui drew (item and clip rectangles, tab bars, window rectangles) and on pixels read
back; the screenshots of every tab group are written to the test's tmp_path for looking at.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import start_xvfb
from studio_helpers import DrawnItems, run_until

from app.actions import SaveWindowPNG

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"
WAIT_S = 90
SIZES = {(1280, 720): (1920, 1200), (1440, 900): (1440, 900), (1920, 1080): (1920, 1080)}
"""Screen size -> window size asked for (1280x720: a size saved on a bigger screen, which must shrink)."""


@pytest.fixture
def screen(request):
    """An Xvfb server with a screen of the parametrised size, as $DISPLAY for the test."""
    width, height = request.param
    server, name = start_xvfb(f"{width}x{height}x24")
    before = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = name
    yield width, height
    if before is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = before
    server.terminate()
    server.wait()


def tab_problems(names) -> list[str]:
    """Docked panels whose tab label is shortened, and dock nodes whose tabs do not all fit."""
    from imgui_bundle import imgui
    out = []
    for name in names:
        window = imgui.internal.find_window_by_name(name)
        node = window.dock_node if window is not None else None
        if node is None or node.tab_bar is None:
            out.append(f"{name} is not docked")
            continue
        bar = node.tab_bar
        for tab in bar.tabs:
            if tab.window is not None and tab.window.name == name and tab.width + 0.5 < tab.content_width:
                out.append(f"tab {name!r} is {tab.width:.0f} px wide, its label needs {tab.content_width:.0f}")
        if bar.scroll_button_enabled or bar.width_all_tabs > bar.bar_rect.get_width() + 0.5:
            out.append(f"the tabs of {name!r}'s node do not fit ({bar.width_all_tabs:.0f} px in "
                       f"{bar.bar_rect.get_width():.0f})")
    return out


def window_problems(studio, names) -> list[str]:
    """Panels whose window leaves the area between the menu bar and the status bar."""
    from imgui_bundle import imgui
    viewport = imgui.get_main_viewport()
    top, bottom = viewport.work_pos.y, viewport.work_pos.y + viewport.work_size.y
    out = []
    for name in names:
        w = imgui.internal.find_window_by_name(name)
        r = w.rect()
        if r.min.x < -0.5 or r.max.x > viewport.size.x + 0.5 or r.min.y < top - 0.5 or r.max.y > bottom + 0.5:
            out.append(f"{name} window spans ({r.min.x:.0f}, {r.min.y:.0f})..({r.max.x:.0f}, {r.max.y:.0f}), "
                       f"room: x 0..{viewport.size.x:.0f}, y {top:.0f}..{bottom:.0f}")
    return out


def fill_panels(studio, run: Path) -> None:
    """Give the panels content that only comes with use: keyframes, a watched run's curves and grid, a
    loss curve, an error under the Model panel's path."""
    import json

    import numpy as np
    from PIL import Image

    from core.camera_path import Keyframe
    s = studio.state
    s.camera_path.keyframes = [Keyframe.from_orbit(s.camera) for _ in range(3)]
    run.mkdir()
    (run / "training_options.json").write_text(json.dumps({"kimg": 2.0}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"event": "tick", "kimg": k / 10, "time_s": 10.0 * k, "images_per_s": 50.0, "loss_G": 1 / (k + 1),
                    "loss_D_real": 0.5, "reg_r1": 0.01}) + "\n" for k in range(5)))
    Image.fromarray(np.full((64, 128, 3), 200, np.uint8)).save(run / "fakes000000400.png")
    next(p for p in studio.panels if p.name == "Training").watch(s, str(run))
    s.invert.losses = [("w" if k < 30 else "w+", 1.0 / (k + 1)) for k in range(60)]
    s.invert.estimate, s.invert.estimate_version = (17.0, -18.7), 1   # the camera check (camera: estimate)
    s.invert.view, s.invert.view_at, s.invert.view_version = np.full((128, 128, 3), 90, np.uint8), (17.0, -18.7), 1
    s.model.error = "cannot open /no/such/folder/network-snapshot-000400.pkl: No such file or directory"


@pytest.mark.parametrize("screen", list(SIZES), indirect=True, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_panel_fits_at_common_screen_sizes(screen, tmp_path):
    from imgui_bundle import imgui

    from app.layout import DOCK_GROUPS
    from app.studio import Studio
    from core.imaging import save_png
    studio = Studio(str(MODEL), settings_dir=tmp_path / "settings", window_size=SIZES[screen],
                    output_dir=tmp_path / "out")
    try:
        w, h = studio.window.size
        assert w <= screen[0] and h <= screen[1], f"a {w}x{h} window on a {screen[0]}x{screen[1]} screen"
        assert (w, h) == SIZES[screen] or screen == (1280, 720)
        for p in studio.panels:
            p.open = True
        run_until(studio, lambda: studio.settled, "the first frame", WAIT_S)
        fill_panels(studio, tmp_path / "run")
        studio.state.set_status("cannot open /a/very/long/path/that/does/not/exist/at/all/on/this/machine/"
                                "network-snapshot-000400.pkl: No such file or directory " * 2, error=True)
        problems: list[str] = []
        names = [name for group in DOCK_GROUPS for name in group]
        planes, invert = (next(p for p in studio.panels if p.name == name) for name in ("Planes", "Invert"))
        for mode in ("image", "depth"):
            studio.state.view.mode, studio.state.view.split = mode, mode == "image"
            planes.use_pca, invert.camera = mode == "image", 1 if mode == "image" else 2
            for k in range(max(len(g) for g in DOCK_GROUPS)):
                front = [g[min(k, len(g) - 1)] for g in DOCK_GROUPS]
                for p in studio.panels:     # one at a time: ImGui brings one window forward per frame
                    if p.name in front:
                        p.focus = True
                        studio.step()
                with DrawnItems() as drawn:
                    for _ in range(4):
                        studio.step()
                problems += drawn.problems() + tab_problems(names) + window_problems(studio, front)
                status = [it for it in drawn.items if it["window"].startswith("##status")]
                assert status, "no status bar drawn"
                x0, y0, x1, y1 = status[-1]["rect"]
                assert y1 <= status[-1]["clip"][3] + 0.5 and y1 <= h, f"status line ends at y {y1} of {h}"
                assert imgui.get_main_viewport().work_size.y > 0
                studio.state.actions.append(SaveWindowPNG(str(tmp_path / f"{mode}-{k}.png")))
                studio.step()
        problems = sorted(set(problems))
        assert not problems, f"{len(problems)} layout problems:\n" + "\n".join(problems)
        pixels = studio.read_window()
        assert pixels.shape[:2] == (studio.window.framebuffer_size[1], studio.window.framebuffer_size[0])
        save_png(tmp_path / "last.png", pixels)
    finally:
        studio.close()
