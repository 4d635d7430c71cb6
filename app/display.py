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
from core.imaging import MASK_OPACITY


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
               colormap: int = 1, mask: Texture | None = None) -> None:
        """`texture` through the colour map over lo..hi; with `mask` (an opacity texture of the same
        texels), texels of opacity below 0.5 are drawn as the far end (hi), as render's depth PNGs."""
        p = self.colormap
        with target:
            p.use()
            texture.bind(0)
            (mask or texture).bind(1)
            p.set("u_scalar", 0)
            p.set("u_opacity", 1)
            p.set("u_mask", int(mask is not None))
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
        self.foreground_range: tuple[float, float] | None = None
        """Depth range of the texels with opacity >= 0.5; None when there are none (or no opacity)."""
        self.stale = False
        """The frame belongs to a previous model (a new one is loading): shown greyed, never as current."""
        self._bar_values = Texture()
        self._bar: RenderTarget | None = None

    def show(self, frame: Frame) -> None:
        """Upload a finished frame (UI thread)."""
        if frame.image is not None:
            self.uploader.upload_rgb(frame.image, self.image, frame.opacity)
        self.uploader.upload_rgb(frame.image_raw, self.raw, frame.opacity)
        self.uploader.upload_scalar(frame.depth, self.depth)
        self.uploader.upload_scalar(frame.opacity, self.opacity)
        d = frame.depth.float()
        self.depth_range = (float(d.min()), float(d.max()))
        self.foreground_range = None
        if frame.opacity is not None and frame.opacity.shape == frame.depth.shape:
            fg = d[frame.opacity >= MASK_OPACITY]
            if fg.numel():
                self.foreground_range = (float(fg.min()), float(fg.max()))
        self.frame, self.stale = frame, False

    def native_size(self, view: ViewState) -> int:
        """Side in texels of the image `view` shows (SR size in image mode, else the neural size)."""
        f = self.frame
        if f is None:
            return 0
        if view.mode == "image" and f.image is not None:
            return int(f.image.shape[-1])
        return int(f.image_raw.shape[-1])

    def draw(self, view: ViewState, size: tuple[int, int], target: RenderTarget | None = None) -> RenderTarget:
        """Draw the current view at `size` pixels into `target` (default: the viewport's own target);
        before the first frame the target is left as it is."""
        target = target or self.target
        target.resize(*size)
        c, f = self.colorizer, self.frame
        if f is None:
            return target
        if view.mode == "depth":
            lo, hi = self.shown_depth_range(view)
            c.scalar(target, self.depth, lo, hi, invert=view.depth_near_bright, colormap=view.colormap,
                     mask=self.opacity if self.masks_depth(view) else None)
        elif view.mode == "opacity":
            c.scalar(target, self.opacity, 0.0, 1.0, colormap=view.colormap)
        elif view.mode == "image" and f.image is not None:
            compare = self.raw if view.split else None
            c.rgb(target, self.image, compare, view.split_pos, view.background)
        else:
            c.rgb(target, self.raw, background=view.background)
        return target

    def masks_depth(self, view: ViewState) -> bool:
        """The depth view hides the background: asked for, and the frame has foreground texels (else
        every texel is shown, as for models with an opaque background)."""
        return view.depth_mask and self.foreground_range is not None

    def shown_depth_range(self, view: ViewState) -> tuple[float, float]:
        """(near, far) in scene units that the depth colour map spans: automatic over the foreground
        texels when masking (render's depth PNGs), else over all texels, or the view's fixed range."""
        if not view.depth_auto:
            return tuple(view.depth_range)
        return self.foreground_range if self.masks_depth(view) else self.depth_range

    def colorbar(self, view: ViewState, width: int) -> RenderTarget:
        """The depth colour map from near to far, drawn `width` x 8 pixels."""
        lo, hi = self.shown_depth_range(view)
        self._bar_values.upload(np.linspace(lo, hi, 256, dtype=np.float32)[None])
        if self._bar is None:
            self._bar = RenderTarget()
        self._bar.resize(width, 8)
        self.colorizer.scalar(self._bar, self._bar_values, lo, hi, invert=view.depth_near_bright,
                              colormap=view.colormap)
        return self._bar

    def probe(self, view: ViewState, u: float, v: float) -> dict:
        """Depth (scene units), opacity and colour (0-255, of the SR image in image mode, else of the raw
        image) of the frame at image coordinates u, v in [0, 1) (u right, v down)."""
        f = self.frame
        n = f.depth.shape[-1]
        i, j = min(int(v * n), n - 1), min(int(u * n), n - 1)
        image = f.image if view.mode == "image" and f.image is not None else f.image_raw
        m = image.shape[-1]
        rgb = image[:, min(int(v * m), m - 1), min(int(u * m), m - 1)].float()
        return {"depth": float(f.depth[0, i, j]), "opacity": float(f.opacity[0, i, j]),
                "rgb": [int(c) for c in (rgb * 127.5 + 128).clamp(0, 255).tolist()]}

    def read(self) -> np.ndarray:
        """The viewport's drawn view as [H, W, 3] uint8 (tests read pixels through this)."""
        return self.target.read()

    def render_view(self, view: ViewState, side: int) -> np.ndarray:
        """The current view drawn at side x side pixels, read back (frame PNGs, screen recording)."""
        if self._offscreen is None:
            self._offscreen = RenderTarget()
        return self.draw(view, (side, side), self._offscreen).read()
