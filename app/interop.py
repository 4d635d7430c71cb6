"""Frame tensors -> GL textures: CUDA-GL interop through pycuda (or cuda-python, app/interop_cudart.py)
when possible, else a host copy.

Interop needs CUDA, a pycuda build configured with --cuda-enable-gl (a plain `pip install pycuda` has
no GL support) and frames that are still on the GPU. Every failure (ImportError, OSError, driver error)
is caught and becomes the `reason` the performance panel shows; the host copy always works.

The interop path cannot be exercised on the project's CPU-only test machines: it is written from the
pycuda documentation (RegisteredImage + Memcpy2D device-to-array copy) and is untested here.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from app.gl import Texture

log = logging.getLogger(__name__)


def _alpha_like(image: torch.Tensor, opacity: torch.Tensor | None) -> torch.Tensor:
    """Opacity [1, h, w] in [0, 1] resized to the image's size, as [1, H, W] (ones when absent)."""
    if opacity is None:
        return torch.ones_like(image[:1])
    if opacity.shape[-1] != image.shape[-1]:
        opacity = F.interpolate(opacity[None].float(), size=image.shape[-2:], mode="bilinear",
                                align_corners=False)[0]
    return opacity.to(image.device, image.dtype)


def to_rgba8(image: torch.Tensor, opacity: torch.Tensor | None = None) -> torch.Tensor:
    """[3, H, W] image in [-1, 1] + opacity -> [H, W, 4] uint8 on the image's device (the original
    tools' rounding, x * 127.5 + 128)."""
    rgb = image.detach() * 127.5 + 128
    alpha = _alpha_like(image.detach(), opacity) * 255 + 0.5
    return torch.cat([rgb, alpha]).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


class _CudaGL:
    """pycuda state: the primary context torch uses, plus one registered image per texture."""

    def __init__(self, device_index: int):
        import pycuda.driver as cuda
        import pycuda.gl  # noqa: F401  (fails without a GL-enabled build)
        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(device_index).retain_primary_context()
        self._registered: dict[int, tuple[tuple[int, int], object]] = {}

    def copy(self, rgba: torch.Tensor, texture: Texture) -> None:
        """Device-to-array copy of a contiguous [H, W, 4] uint8 CUDA tensor into `texture`."""
        import pycuda.gl as cudagl
        h, w = rgba.shape[:2]
        if texture.size != (w, h) or texture.id not in self._registered:
            texture.allocate(w, h)
            old = self._registered.pop(texture.id, None)
            if old is not None:
                old[1].unregister()
            flags = cudagl.graphics_map_flags.WRITE_DISCARD
            self._registered[texture.id] = ((w, h), cudagl.RegisteredImage(texture.id, 0x0DE1, flags))
        image = self._registered[texture.id][1]
        torch.cuda.current_stream().synchronize()  # CPU-GPU sync: the tensor must be complete
        self.context.push()
        try:
            mapping = image.map()
            copy = self.cuda.Memcpy2D()
            copy.set_src_device(rgba.data_ptr())
            copy.set_dst_array(mapping.array(0, 0))
            copy.width_in_bytes = copy.src_pitch = w * 4
            copy.height = h
            copy(aligned=False)
            mapping.unmap()
        finally:
            self.context.pop()


class TextureUploader:
    """Uploads Frame tensors; `path` and `reason` say which route is used and why."""

    def __init__(self, device: torch.device):
        self._interop: _CudaGL | None = None
        self.path, self.reason = "host copy (glTexSubImage2D)", ""
        if device.type != "cuda":
            self.reason = f"rendering on {device.type}: no CUDA-GL interop"
            return
        try:
            self._interop = _CudaGL(device.index or 0)
        except ImportError as e:
            self.reason = f"pycuda with GL support not installed ({e})"
            self._use_cudart(device.index or 0)
        except Exception as e:  # OSError, pycuda.driver.Error: no driver, no GL context sharing
            self.reason = f"CUDA-GL interop unavailable: {e}"
        else:
            self.path, self.reason = "CUDA-GL interop (pycuda)", "frames stay on the GPU"

    def _use_cudart(self, device_index: int) -> None:
        """Without pycuda, try the same interop through cuda-python (app/interop_cudart.py)."""
        try:
            from app.interop_cudart import CudartGL
            self._interop = CudartGL(device_index)
        except Exception as e:  # ImportError, driver errors: keep the host copy and say why
            self.reason += f"; cuda.bindings interop unavailable: {e}"
        else:
            self.path, self.reason = CudartGL.name, "frames stay on the GPU"

    @property
    def wants_device_frames(self) -> bool:
        """True when frames should stay on the GPU (the engine then skips its host copy)."""
        return self._interop is not None

    def upload_rgb(self, image: torch.Tensor, texture: Texture, opacity: torch.Tensor | None = None) -> None:
        """[3, H, W] image in [-1, 1] (+ [1, h, w] opacity as alpha) -> RGBA8 texture."""
        if self._interop is not None and image.is_cuda:
            try:
                self._interop.copy(to_rgba8(image, opacity), texture)
                return
            except Exception as e:  # fall back for good, and say why
                log.warning("CUDA-GL interop failed, using host copies: %s", e)
                self._interop = None
                self.path, self.reason = "host copy (glTexSubImage2D)", f"interop failed: {e}"
        elif self._interop is not None:
            self.reason = "frames arrive on the CPU (the engine copied them to the host)"
        texture.upload(to_rgba8(image, opacity).cpu().numpy())

    @staticmethod
    def upload_scalar(values: torch.Tensor, texture: Texture) -> None:
        """[1, H, W] float map (depth, opacity) -> R32F texture; the colormap shader normalises it."""
        texture.upload(values[0].detach().float().cpu().numpy())
