"""Pictures and videos as files: uint8 conversion, the depth colour map, grids, PNG and H.264 MP4 writers.

One place for what the renderer, the trainer and the studio all write. Frames are numpy uint8 [H,W,3]
(HWC: what PIL, imageio and GL uploads take). Generator images in [-1,1] become bytes as the original
tools do it: clamp(x * 127.5 + 128).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.fileio import atomic_path, deferred_signals

log = logging.getLogger(__name__)

# Anchor colours of the depth colour map (near -> far: warm -> cool), linearly interpolated.
_DEPTH_ANCHORS = np.array([[252, 255, 164], [249, 142, 9], [188, 55, 84], [87, 16, 110], [0, 0, 4]],
                          dtype=np.float32)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Images in [-1,1] -> uint8 HWC: [3,H,W] -> [H,W,3], [N,3,H,W] -> [N,H,W,3]."""
    x = (image.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


MASK_OPACITY = 0.5
"""Depth views treat a pixel as background when its accumulated opacity is below this."""


def foreground_mask(opacity: torch.Tensor | np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Opacity [..., H, W] -> bool [H, W], True where opacity >= MASK_OPACITY; None when there is no
    opacity or no pixel is foreground (depth views then use every pixel, as for opaque backgrounds)."""
    if opacity is None:
        return None
    o = opacity.detach().float().cpu().numpy() if isinstance(opacity, torch.Tensor) else np.asarray(opacity)
    if o.size != shape[0] * shape[1]:
        raise ValueError(f"opacity of {o.size} values does not match depth of {shape[0]}x{shape[1]}")
    fg = o.reshape(shape) >= MASK_OPACITY
    return fg if fg.any() else None


def depth_to_uint8(depth: torch.Tensor, colormap: bool = False,
                   opacity: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
    """Depth [1,H,W] or [1,1,H,W] -> uint8 [H,W,3], min-max normalised per image, near = bright.

    Grey as in the original video tool, or with `colormap` a warm-to-cool ramp (near = light yellow).
    With `opacity` (same pixels as depth), pixels below MASK_OPACITY are background: the range is taken
    over the foreground only and the background is drawn as the far end, since the depth of rays that
    hit nothing is a ratio of tiny weights (arbitrary swirls). Without any foreground, as without opacity.
    """
    d = depth.detach().float().reshape(depth.shape[-2], depth.shape[-1]).cpu().numpy()
    fg = foreground_mask(opacity, d.shape)
    shown = d if fg is None else d[fg]
    lo, hi = float(shown.min()), float(shown.max())
    t = (hi - d) / (hi - lo) if hi > lo else np.ones_like(d)  # 1 = nearest
    if fg is not None:
        t = np.where(fg, t, 0.0).astype(np.float32)  # background = far
    if not colormap:
        g = (t * 255 + 0.5).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    pos = (1 - t) * (len(_DEPTH_ANCHORS) - 1)
    i = np.clip(np.floor(pos).astype(int), 0, len(_DEPTH_ANCHORS) - 2)
    f = (pos - i)[..., None]
    rgb = _DEPTH_ANCHORS[i] * (1 - f) + _DEPTH_ANCHORS[i + 1] * f
    return (rgb + 0.5).astype(np.uint8)


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H,W,3] -> [size,size,3] (bilinear; a no-op when already that size)."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    t = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def parse_grid(text: str) -> tuple[int, int]:
    """'3x2' -> (3 columns, 2 rows); anything else is a one-line ValueError."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"bad grid {text!r} (expected COLUMNSxROWS like 2x2)")
    return int(parts[0]), int(parts[1])


def grid_shape(cells: int, requested: tuple[int, int] | None) -> tuple[int, int]:
    """(columns, rows) for `cells` cells: the requested one, or near-square."""
    if requested is not None:
        return requested
    cols = math.ceil(math.sqrt(cells))
    return cols, math.ceil(cells / cols)


def grid(frames: Sequence[np.ndarray], cols: int, pad: int = 0, background: int = 0) -> np.ndarray:
    """Tile equally sized uint8 [H,W,3] frames row-major into `cols` columns (missing cells = background)."""
    if not len(frames):
        raise ValueError("no frames to tile")
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        raise ValueError("all frames of a grid must have the same size")
    cols = max(1, min(cols, len(frames)))
    rows = math.ceil(len(frames) / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), background, np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = f
    return out


def contact_sheet(frames: Sequence[np.ndarray], cols: int, labels: Sequence[str] | None = None,
                  pad: int = 4) -> np.ndarray:
    """A grid on a white background with an optional small caption under each frame."""
    if labels is None:
        return grid(frames, cols, pad, 255)
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    caption = 14
    captioned = []
    for f, text in zip(frames, labels):
        img = Image.new("RGB", (f.shape[1], f.shape[0] + caption), (255, 255, 255))
        img.paste(Image.fromarray(f), (0, 0))
        ImageDraw.Draw(img).text((2, f.shape[0] + 1), text, fill=(0, 0, 0), font=font)
        captioned.append(np.asarray(img))
    return grid(captioned, cols, pad, 255)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """uint8 [H,W,3] -> PNG at `path` (path first, as np.save and imageio.imwrite), atomically."""
    from PIL import Image
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")
    return path


# H.264 in the colour space browsers and players assume for RGB-sourced video: BT.709 matrix, primaries
# and transfer, limited ("tv") range, the conversion done with the same matrix that the tags name
# (swscale's default is BT.601). +faststart moves the index before the media, so playback and
# streaming start before the whole file has arrived.
_H264_PARAMS = [
    "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
           "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
    "-movflags", "+faststart"]


class Mp4Writer:
    """uint8 [H,W,3] frames -> H.264 MP4 (yuv420p, BT.709 tv range, faststart) through imageio-ffmpeg.

    yuv420p needs even sizes: an odd width or height is padded by repeating the last column or row,
    and a warning says so. Write to a temporary path and rename (see `core.fileio.atomic_path`)
    so that an interrupted video never appears under the final name.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, bitrate: str | None = "10M",
                 quality: float | None = None):
        self.path, self.fps, self.bitrate, self.quality = Path(path), float(fps), bitrate, quality
        self.frames = 0
        self._gen = None
        self._size: tuple[int, int] | None = None

    def append(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self._gen is None:
            self._open(w, h)
        elif (w, h) != self._size:
            raise ValueError(f"frame size {w}x{h} differs from the video's {self._size[0]}x{self._size[1]}")
        if w % 2 or h % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(frame))
        self.frames += 1

    def _open(self, w: int, h: int) -> None:
        import imageio_ffmpeg
        if w % 2 or h % 2:
            log.warning("frame size %dx%d is odd; H.264 (yuv420p) needs even sizes: the video is %dx%d "
                        "(last column/row repeated)", w, h, w + w % 2, h + h % 2)
        self._size = (w, h)
        kwargs = {"bitrate": self.bitrate} if self.quality is None else {"quality": self.quality}
        with deferred_signals():  # until the generator holds ffmpeg, an interrupt would orphan it
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), (w + w % 2, h + h % 2), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
                macro_block_size=1, ffmpeg_log_level="error", output_params=list(_H264_PARAMS), **kwargs)
            self._gen.send(None)  # starts ffmpeg

    def close(self) -> None:
        """Finish the file (ffmpeg writes the index now). Safe to call twice."""
        if self._gen is not None:
            gen, self._gen = self._gen, None
            gen.close()
