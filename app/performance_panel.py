"""Performance panel: UI frame time and render time sparklines, the time of each refinement step
(preview, raw, SR) and the dynamic-resolution scale, per-stage render ms of the last frame, cache hits,
resolution, device and the texture upload path (with the reason interop is or is not used); attached to a
server, its round trip time and bytes per frame."""
from __future__ import annotations

import numpy as np
from imgui_bundle import imgui

from app.imgui_utils import em, info_table
from app.panel import Panel
from app.state import AppState

STAGES = ("mapping", "backbone", "rendering", "superresolution", "total")
RUNGS = ("preview", "raw", "SR")
"""Refinement steps, each with the time of its last render."""


class PerformancePanel(Panel):
    name = "Performance"

    def draw(self, state: AppState) -> None:
        p = state.perf
        ui = np.asarray(p.ui_frame_ms[-120:], np.float32)
        if len(ui):
            mean = float(ui[-30:].mean())
            imgui.plot_lines("##ui", ui, overlay_text=f"UI {1000 / max(mean, 1e-3):.0f} fps ({mean:.1f} ms)",
                             scale_min=0.0, graph_size=imgui.ImVec2(-1, em(2.5)))
        render = np.asarray(p.render_ms[-60:], np.float32)
        if len(render):
            imgui.plot_lines("##render", render, overlay_text=f"render {render[-1]:.0f} ms",
                             scale_min=0.0, graph_size=imgui.ImVec2(-1, em(2.5)))
        rows = [(f"step: {rung}", f"{p.rung_ms[rung]:.0f} ms ({p.rung_detail.get(rung, '')})")
                for rung in RUNGS if rung in p.rung_ms]
        if state.view.target_fps > 0:
            rows.append(("preview scale", f"{p.preview_scale:.2f} (target {state.view.target_fps:g} fps)"))
        rows += [(stage, f"{p.last_timings[stage] * 1000:.1f} ms") for stage in STAGES if stage in p.last_timings]
        rows.append(("cache", ", ".join(f"{k} {'hit' if v else 'miss'}" for k, v in p.last_cache.items()) or "-"))
        rows += p.link
        rows += [("resolution", p.frame_resolution or "-"), ("device", p.device),
                 ("texture path", p.texture_path)]
        if p.texture_reason:
            rows.append(("why", p.texture_reason))
        info_table(rows, "perf")
