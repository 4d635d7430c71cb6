"""Planes panel: the three feature planes of the current latent, labelled by the axes they sample.

The renderer projects a point p (scaled by 2/box_warp) onto plane 0 as (x, y), plane 1 as (x, z) and
plane 2 as (z, x) (EG3D ref §1.5), so the planes are xy, xz and zx. Each shows one channel through the
colormap shader, or a PCA of all 32 channels to RGB; hovering a plane shows a zoomed close-up. The
planes come from an InspectPlanes action (the session runs it through the engine's cache, a hit right
after a render) and arrive in AppState.planes; the panel only uploads and draws them.
"""
from __future__ import annotations

from imgui_bundle import imgui

from app.actions import InspectPlanes
from app.display import Colorizer
from app.gl import RenderTarget, Texture, texture_ref
from app.imgui_utils import CLAMP, em, hint, info_table
from app.panel import Panel
from app.state import AppState

PLANE_AXES = ("xy", "xz", "zx")


def plane_coordinates(point: tuple[float, float, float], box_warp: float) -> list[tuple[float, float]]:
    """Where a world point lands on each plane, as (u, v) in [-1, 1] (u along width, v along height)."""
    x, y, z = (2.0 / box_warp * c for c in point)
    return [(x, y), (x, z), (z, x)]


class PlanesPanel(Panel):
    name = "Planes"
    label_em = 9.0

    def __init__(self, colorizer: Colorizer):
        super().__init__()
        self.colorizer = colorizer
        self.channel, self.use_pca, self.zoom = 0, True, 4
        self.textures = [Texture() for _ in PLANE_AXES]
        self.targets = [RenderTarget() for _ in PLANE_AXES]
        self.shown_key: tuple | None = None
        self.result: dict | None = None

    def draw(self, state: AppState) -> None:
        num_channels = 32
        _, self.use_pca = imgui.checkbox("PCA to RGB", self.use_pca)
        if not self.use_pca:
            _, self.channel = imgui.slider_int("channel", self.channel, 0, num_channels - 1, "%d", CLAMP)
        _, self.zoom = imgui.slider_int("close-up zoom", self.zoom, 2, 16, "%dx", CLAMP)
        self._update(state)
        if self.result is None:
            imgui.text_disabled("computing planes ..." if state.model.path else "no model")
            return
        spacing = imgui.get_style().item_spacing.x
        side = max(min((imgui.get_content_region_avail().x - 2 * spacing) / 3, em(16)), em(3))
        marks = plane_coordinates(state.camera.pivot, state.model.options.box_warp)
        for i, axes in enumerate(PLANE_AXES):
            if i:
                imgui.same_line()
            imgui.begin_group()
            imgui.text(f"{i}: {axes}")
            top_left = imgui.get_cursor_screen_pos()
            scalar = "scalar" in self.result
            tex_id = self.targets[i].texture.id if scalar else self.textures[i].id
            # render targets hold GL rows (bottom first): swap v for them
            uv0, uv1 = (imgui.ImVec2(0, 1), imgui.ImVec2(1, 0)) if scalar else (imgui.ImVec2(0, 0), imgui.ImVec2(1, 1))
            imgui.image(texture_ref(tex_id), imgui.ImVec2(side, side), uv0, uv1)
            if imgui.is_item_hovered():
                self._close_up(tex_id, top_left, side, scalar)
            u, v = marks[i]
            centre = imgui.ImVec2(top_left.x + (u + 1) / 2 * side, top_left.y + (v + 1) / 2 * side)
            imgui.get_window_draw_list().add_circle(centre, em(0.35), 0xFF00FFFF, 0, 2.0)
            imgui.end_group()
        what = "all channels" if self.use_pca else f"channel {self.channel}"
        info_table([(f"{axes} ({what})", "mean {:+.3f}  std {:.3f}  min {:+.2f}  max {:+.2f}".format(*stats))
                    for axes, stats in zip(PLANE_AXES, self.result["stats"])], "plane-stats")
        hint("Circle: the look-at point projected on each plane. Hover a plane for a close-up.")
        imgui.plot_histogram("std per channel", self.result["channel_std"], graph_size=imgui.ImVec2(0, em(3)))

    def _close_up(self, tex_id: int, top_left: imgui.ImVec2, side: float, flipped: bool) -> None:
        """Tooltip with the region around the cursor magnified `zoom` times."""
        mouse = imgui.get_io().mouse_pos
        u, v = (mouse.x - top_left.x) / side, (mouse.y - top_left.y) / side
        half = 0.5 / self.zoom
        u = min(max(u, half), 1 - half)
        v = min(max(v, half), 1 - half)
        v0, v1 = (1 - (v - half), 1 - (v + half)) if flipped else (v - half, v + half)
        imgui.begin_tooltip()
        imgui.image(texture_ref(tex_id), imgui.ImVec2(em(12), em(12)), imgui.ImVec2(u - half, v0),
                    imgui.ImVec2(u + half, v1))
        imgui.end_tooltip()

    def _update(self, state: AppState) -> None:
        if state.model.path is None:
            self.result = None
            return
        noise = (state.view.noise_mode, state.view.noise_seed if state.view.noise_mode == "random" else 0)
        key = (state.model.generation, state.latent.latent(), None if self.use_pca else self.channel, noise)
        got = state.planes
        if got is not None and got[0] != self.shown_key:
            self.shown_key = got[0]         # also after an error: no retry loop on the same key
            if isinstance(got[1], dict):
                self._show(got[1])
        if key != self.shown_key and not any(isinstance(a, InspectPlanes) and a.key == key
                                             for a in state.actions) and state.planes_wanted != key:
            state.planes_wanted = key
            state.actions.append(InspectPlanes(key, key[1], key[2], *noise))

    def _show(self, result: dict) -> None:
        """Upload the job's arrays (UI thread) and draw scalar maps through the colormap shader."""
        self.result = result
        if "rgb" in result:
            for tex, rgb in zip(self.textures, result["rgb"]):
                tex.upload(rgb)
            return
        lo, hi = result["range"]
        for tex, target, values in zip(self.textures, self.targets, result["scalar"]):
            tex.upload(values)
            target.resize(values.shape[1], values.shape[0])
            self.colorizer.scalar(target, tex, lo, hi, colormap=2)

    def close(self) -> None:
        for t in self.textures:
            t.delete()
        for t in self.targets:
            t.delete()
