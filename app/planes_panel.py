"""Planes panel: the three feature planes of the current latent, labelled by the axes they sample.

The renderer projects a point p (scaled by 2/box_warp) onto plane 0 as (x, y), plane 1 as (x, z) and
plane 2 as (z, x) (EG3D ref §1.5), so the planes are xy, xz and zx. Each shows one channel through the
colormap shader, or a PCA of all 32 channels to RGB. The planes are computed on a job thread through
the engine's cache (a hit right after a render), never on the UI thread.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from imgui_bundle import imgui

from app.display import Colorizer
from app.gl import RenderTarget, Texture, show_target, texture_ref
from app.imgui_utils import em, info_table
from app.jobs import Job
from app.panel import Panel
from app.state import AppState
from core.engine import Latent, RenderEngine

PLANE_AXES = ("xy", "xz", "zx")
DISPLAY_SIZE = 256


def plane_coordinates(point: tuple[float, float, float], box_warp: float) -> list[tuple[float, float]]:
    """Where a world point lands on each plane, as (u, v) in [-1, 1] (u along width, v along height)."""
    x, y, z = (2.0 / box_warp * c for c in point)
    return [(x, y), (x, z), (z, x)]


def pca_rgb(planes: torch.Tensor, samples: int = 8192) -> np.ndarray:
    """[3, C, H, W] -> [3, H, W, 3] uint8: the 3 leading principal components of the C-dim features,
    fitted jointly over the three planes, each stretched from its 1st to 99th percentile."""
    n, c, h, w = planes.shape
    feats = planes.permute(0, 2, 3, 1).reshape(-1, c).float()                      # [3*H*W, C]
    gen = torch.Generator().manual_seed(0)
    sample = feats[torch.randint(len(feats), (min(samples, len(feats)),), generator=gen)]
    mean = sample.mean(0)
    _, _, v = torch.linalg.svd(sample - mean, full_matrices=False)
    proj = (feats - mean) @ v[:3].T                                                 # [3*H*W, 3]
    lo, hi = torch.quantile(proj[::7], torch.tensor([0.01, 0.99]), dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return (rgb * 255 + 0.5).to(torch.uint8).reshape(n, h, w, 3).numpy()


def plane_images(planes: torch.Tensor, channel: int | None) -> dict:
    """[1, 3, C, H, W] planes -> display arrays and statistics (one channel, or PCA when None)."""
    p = planes[0].float().cpu()
    if p.shape[-1] > DISPLAY_SIZE:
        p = torch.nn.functional.interpolate(p, size=(DISPLAY_SIZE, DISPLAY_SIZE), mode="area")
    stats = [(float(p[i].mean()), float(p[i].std()), float(p[i].min()), float(p[i].max())) for i in range(3)]
    channel_std = p.std(dim=(2, 3)).mean(0).numpy().astype(np.float32)           # [C]
    if channel is None:
        return {"rgb": pca_rgb(p), "stats": stats, "channel_std": channel_std}
    maps = p[:, channel].numpy().astype(np.float32)                                 # [3, H, W]
    ch_stats = [(float(m.mean()), float(m.std()), float(m.min()), float(m.max())) for m in maps]
    return {"scalar": maps, "range": (float(maps.min()), float(maps.max())), "stats": ch_stats,
            "channel_std": channel_std}


class PlanesPanel(Panel):
    name = "Planes"

    def __init__(self, engine: Callable[[], RenderEngine | None], colorizer: Colorizer):
        super().__init__()
        self.engine, self.colorizer = engine, colorizer
        self.channel, self.use_pca = 0, True
        self.textures = [Texture() for _ in PLANE_AXES]
        self.targets = [RenderTarget() for _ in PLANE_AXES]
        self.job: Job | None = None
        self.job_key: tuple | None = None
        self.shown_key: tuple | None = None
        self.result: dict | None = None

    def draw(self, state: AppState) -> None:
        num_channels = 32
        _, self.use_pca = imgui.checkbox("PCA to RGB", self.use_pca)
        if not self.use_pca:
            imgui.same_line()
            imgui.set_next_item_width(em(8))
            _, self.channel = imgui.slider_int("channel", self.channel, 0, num_channels - 1)
        self._update(state)
        if self.result is None:
            imgui.text_disabled("computing planes ..." if self.job else "no model")
            return
        spacing = imgui.get_style().item_spacing.x
        side = max(min((imgui.get_content_region_avail().x - 2 * spacing) / 3, em(16)), em(3))
        marks = plane_coordinates(state.camera.pivot, float(state.model.rendering_kwargs.get("box_warp", 1.0)))
        for i, axes in enumerate(PLANE_AXES):
            if i:
                imgui.same_line()
            imgui.begin_group()
            imgui.text(f"{i}: {axes}")
            top_left = imgui.get_cursor_screen_pos()
            if "scalar" in self.result:
                show_target(self.targets[i], side, side)
            else:
                imgui.image(texture_ref(self.textures[i].id), imgui.ImVec2(side, side))
            u, v = marks[i]
            centre = imgui.ImVec2(top_left.x + (u + 1) / 2 * side, top_left.y + (v + 1) / 2 * side)
            imgui.get_window_draw_list().add_circle(centre, em(0.35), 0xFF00FFFF, 0, 2.0)
            imgui.end_group()
        what = "all channels" if self.use_pca else f"channel {self.channel}"
        info_table([(f"{axes} ({what})", "mean {:+.3f}  std {:.3f}  min {:+.2f}  max {:+.2f}".format(*stats))
                    for axes, stats in zip(PLANE_AXES, self.result["stats"])], "plane-stats")
        imgui.text_disabled("circle: the look-at point projected on each plane")
        imgui.plot_histogram("std per channel", self.result["channel_std"], graph_size=imgui.ImVec2(0, em(3)))

    def _update(self, state: AppState) -> None:
        engine = self.engine()
        if engine is None:
            self.result = None
            return
        latent: Latent = state.latent.latent()
        key = (state.model.generation, latent, None if self.use_pca else self.channel)
        if self.job is not None and self.job.done:
            job, self.job = self.job, None
            self.shown_key = self.job_key          # also after an error: no retry loop on the same key
            if job.error:
                state.set_status(f"planes: {job.error}", error=True)
            elif job.result is not None:
                self._show(job.result)
        if self.job is None and key != self.shown_key:
            channel, self.job_key = key[2], key
            self.job = Job("planes", lambda _p: plane_images(engine.planes(latent), channel))

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
