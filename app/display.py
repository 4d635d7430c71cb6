"""The on-screen frame: Frame tensors -> textures -> our shaders -> an offscreen image ImGui shows.

Holds the last finished frame's textures (they stay on screen until a newer frame arrives) and draws
the chosen view (SR image, raw image, depth or opacity colormap, raw|SR split) into a render target.
"""
from __future__ import annotations

import numpy as np

from app.gl import Program, Quad, RenderTarget, Texture
from app.interop import TextureUploader
from app.state import ViewState
from core.engine import Frame


class Colorizer:
    """The two display programs (image.frag, colormap.frag) and a quad; shared by viewport and planes."""

    def __init__(self):
        self.image = Program("quad.vert", "image.frag")
        self.colormap = Program("quad.vert", "colormap.frag")
        self.quad = Quad()

    def rgb(self, target: RenderTarget, texture: Texture, compare: Texture | None = None, split: float = 0.0,
            background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        p = self.image
        with target:
            p.use()
            texture.bind(0)
            (compare or texture).bind(1)
            p.set("u_image", 0)
            p.set("u_compare", 1)
            p.set("u_split", float(split) if compare is not None else 0.0)
            p.set("u_divider", 1.0 / max(target.width, 1))
            p.set("u_background", background)
            self.quad.draw()

    def scalar(self, target: RenderTarget, texture: Texture, lo: float, hi: float, invert: bool = False,
               colormap: int = 1) -> None:
        p = self.colormap
        with target:
            p.use()
            texture.bind(0)
            p.set("u_scalar", 0)
            p.set("u_range", (lo, hi))
            p.set("u_invert", int(invert))
            p.set("u_colormap", int(colormap))
            self.quad.draw()


class FrameDisplay:
    """Textures of the frame on screen and the view drawn from them."""

    def __init__(self, colorizer: Colorizer, uploader: TextureUploader):
        self.colorizer, self.uploader = colorizer, uploader
        self.image, self.raw = Texture(), Texture()
        self.depth, self.opacity = Texture(), Texture()
        self.target = RenderTarget()
        self._offscreen: RenderTarget | None = None
        self.frame: Frame | None = None
        self.depth_range = (0.0, 1.0)

    def show(self, frame: Frame) -> None:
        """Upload a finished frame (UI thread)."""
        if frame.image is not None:
            self.uploader.upload_rgb(frame.image, self.image, frame.opacity)
        self.uploader.upload_rgb(frame.image_raw, self.raw, frame.opacity)
        self.uploader.upload_scalar(frame.depth, self.depth)
        self.uploader.upload_scalar(frame.opacity, self.opacity)
        d = frame.depth.float()
        self.depth_range = (float(d.min()), float(d.max()))
        self.frame = frame

    @property
    def resolution(self) -> int:
        """Side of the displayed image in texels (the SR size when present)."""
        if self.frame is None:
            return 0
        img = self.frame.image if self.frame.image is not None else self.frame.image_raw
        return int(img.shape[-1])

    def draw(self, view: ViewState, size: tuple[int, int], target: RenderTarget | None = None) -> RenderTarget:
        """Draw the current view at `size` pixels into `target` (default: the viewport's own target);
        before the first frame the target is left as it is."""
        target = target or self.target
        target.resize(*size)
        c, f = self.colorizer, self.frame
        if f is None:
            return target
        if view.mode == "depth":
            lo, hi = self.depth_range if view.depth_auto else view.depth_range
            c.scalar(target, self.depth, lo, hi, invert=view.depth_near_bright, colormap=view.colormap)
        elif view.mode == "opacity":
            c.scalar(target, self.opacity, 0.0, 1.0, colormap=view.colormap)
        elif view.mode == "image" and f.image is not None:
            compare = self.raw if view.split else None
            c.rgb(target, self.image, compare, view.split_pos, view.background)
        else:
            c.rgb(target, self.raw, background=view.background)
        return target

    def read(self) -> np.ndarray:
        """The viewport's drawn view as [H, W, 3] uint8 (tests read pixels through this)."""
        return self.target.read()

    def render_view(self, view: ViewState, side: int) -> np.ndarray:
        """The current view drawn at side x side pixels, read back (frame PNGs, screen recording)."""
        if self._offscreen is None:
            self._offscreen = RenderTarget()
        return self.draw(view, (side, side), self._offscreen).read()
