"""Frame payloads: a core.engine.Frame as the parts of one binary message, and back.

Images travel as the bytes the studio would show (`x * 127.5 + 128`, clamped, as `render` writes PNGs):
raw RGB or PNG, both lossless, or JPEG (simplejpeg) where a lossy preview is acceptable. Depth and
opacity travel as little-endian float32, always lossless (the depth view, its range and the pixel probe
need the values). The client rebuilds float images at the centre of each byte's interval, so that the
studio's own conversion gives back exactly the bytes that were sent.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from core.engine import Frame, RenderRequest
from core.imaging import to_uint8
from remote.protocol import FieldError, ProtocolError

ENCODINGS = ("raw", "png", "jpeg")
"""raw: RGB bytes; png: lossless, smaller; jpeg: lossy (previews while dragging)."""
PARTS = ("image", "image_raw", "depth", "opacity")
MAX_SIDE = 4096
"""Largest image side a client decodes (bounds what a PNG or JPEG may expand to)."""


def encode_rgb(rgb: np.ndarray, encoding: str, quality: int = 85) -> bytes:
    """uint8 [H,W,3] -> bytes in `encoding`."""
    if encoding == "raw":
        return np.ascontiguousarray(rgb).tobytes()
    if encoding == "png":
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    if encoding == "jpeg":
        import simplejpeg
        return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB")
    raise FieldError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")


def decode_rgb(data: bytes | memoryview, encoding: str, shape: tuple[int, int]) -> np.ndarray:
    """bytes in `encoding` -> uint8 [H,W,3] of the declared shape (ProtocolError otherwise)."""
    h, w = shape
    if encoding == "raw":
        if len(data) != h * w * 3:
            raise ProtocolError(f"raw image of {len(data)} bytes is not {h}x{w}x3")
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)
    try:
        if encoding == "png":
            from PIL import Image
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "PNG" or im.size != (w, h):
                    raise ProtocolError(f"PNG of {im.size} where {w}x{h} was declared")
                rgb = np.asarray(im.convert("RGB"))
        elif encoding == "jpeg":
            import simplejpeg
            jh, jw, _, _ = simplejpeg.decode_jpeg_header(bytes(data))
            if (jh, jw) != (h, w):
                raise ProtocolError(f"JPEG of {jw}x{jh} where {w}x{h} was declared")
            rgb = simplejpeg.decode_jpeg(bytes(data), colorspace="RGB")
        else:
            raise ProtocolError(f"unknown image encoding {str(encoding)[:20]!r}")
    except (OSError, ValueError) as e:
        raise ProtocolError(f"undecodable {encoding} image ({type(e).__name__})") from None
    return rgb


def encode_frame(frame: Frame, encoding: str = "png", quality: int = 85,
                 parts: tuple[str, ...] = PARTS) -> tuple[dict[str, Any], list[bytes]]:
    """Frame -> (header, payload parts) of a "frame" message; `parts` picks the outputs sent."""
    header: dict[str, Any] = {"type": "frame", "generation": frame.request.generation, "error": frame.error,
                              "timings": frame.timings, "cache": frame.cache, "items": []}
    payload = []
    for name in parts:
        t = getattr(frame, name)
        if t is None:
            continue
        if name in ("image", "image_raw"):
            rgb = to_uint8(t)
            header["items"].append({"name": name, "format": encoding, "shape": list(rgb.shape[:2])})
            payload.append(encode_rgb(rgb, encoding, quality))
        else:
            values = t.detach().float().cpu().reshape(t.shape[-2], t.shape[-1]).numpy().astype("<f4")
            header["items"].append({"name": name, "format": "f32", "shape": list(values.shape)})
            payload.append(values.tobytes())
    return header, payload


def decode_frame(header: dict[str, Any], parts: list[memoryview], request: RenderRequest) -> Frame:
    """A "frame" message -> Frame for `request` (images float [3,H,W] in [-1,1], depth/opacity [1,H,W])."""
    items = header.get("items")
    if not isinstance(items, list) or len(items) != len(parts):
        raise ProtocolError("frame items do not match its parts")
    frame = Frame(request=request, error=header.get("error") if isinstance(header.get("error"), str) else None,
                  timings=_floats(header.get("timings")), cache=_flags(header.get("cache")))
    for item, data in zip(items, parts):
        name, fmt, shape = item.get("name"), item.get("format"), item.get("shape")
        if name not in PARTS or not (isinstance(shape, list) and len(shape) == 2 and all(
                isinstance(n, int) and 0 < n <= MAX_SIDE for n in shape)):
            raise ProtocolError(f"bad frame item {str(item)[:80]}")
        if name in ("image", "image_raw"):
            rgb = decode_rgb(data, fmt, tuple(shape))
            value = torch.from_numpy(((rgb.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1).copy())
        else:
            if fmt != "f32" or len(data) != shape[0] * shape[1] * 4:
                raise ProtocolError(f"{name}: {len(data)} bytes are not {shape[0]}x{shape[1]} float32")
            value = torch.from_numpy(np.frombuffer(data, "<f4").astype(np.float32)).reshape(1, *shape)
        setattr(frame, name, value)
    return frame


def _floats(obj: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in obj.items() if isinstance(v, (int, float))} if isinstance(obj, dict) else {}


def _flags(obj: Any) -> dict[str, bool]:
    return {str(k): bool(v) for k, v in obj.items() if isinstance(v, bool)} if isinstance(obj, dict) else {}
