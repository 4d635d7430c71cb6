"""CUDA-GL interop through CUDA's own Python bindings (cuda-python's `cuda.bindings.runtime`).

The same job as the pycuda path in app/interop.py: copy a contiguous [H, W, 4] uint8 CUDA tensor
into a GL texture without leaving the GPU. It exists because pycuda is source-only and needs a build
with GL support, while cuda-bindings ships as a wheel (and is preinstalled where CUDA images carry
it). Runtime API calls share torch's primary context, so no context push is needed, and mapping,
copying and unmapping are queued on torch's current stream, which orders them after the kernels that
produced the frame without a CPU-GPU synchronisation.
"""
from __future__ import annotations

import torch

from app.gl import Texture

GL_TEXTURE_2D = 0x0DE1


def _runtime():
    """The runtime-API module of cuda-python (13.x and 12.x layouts)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
    return runtime


class CudartGL:
    """Registered GL textures and device-to-array copies through the CUDA runtime API."""

    name = "CUDA-GL interop (cuda.bindings)"

    def __init__(self, device_index: int):
        self.rt = _runtime()
        self.device_index = device_index
        self._check(self.rt.cudaSetDevice(device_index), "cudaSetDevice")
        self._registered: dict[int, tuple[tuple[int, int], object]] = {}

    def _check(self, result, what: str):
        """cuda-python returns (error, *values): raise on an error, else return the values."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, text = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"{what} failed: {text.decode(errors='replace')} ({int(err)})")
        return values[0] if len(values) == 1 else values

    def _resource(self, texture: Texture, w: int, h: int):
        if texture.size != (w, h) or texture.id not in self._registered:
            texture.allocate(w, h)
            old = self._registered.pop(texture.id, None)
            if old is not None:
                self._check(self.rt.cudaGraphicsUnregisterResource(old[1]), "cudaGraphicsUnregisterResource")
            flags = self.rt.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsWriteDiscard
            resource = self._check(self.rt.cudaGraphicsGLRegisterImage(texture.id, GL_TEXTURE_2D, int(flags)),
                                   "cudaGraphicsGLRegisterImage")
            self._registered[texture.id] = ((w, h), resource)
        return self._registered[texture.id][1]

    def copy(self, rgba: torch.Tensor, texture: Texture) -> None:
        """Device-to-array copy of a contiguous [H, W, 4] uint8 CUDA tensor into `texture`."""
        if rgba.dtype != torch.uint8 or rgba.dim() != 3 or rgba.shape[2] != 4 or not rgba.is_contiguous():
            raise ValueError(f"interop copy needs a contiguous [H, W, 4] uint8 tensor, got {tuple(rgba.shape)} "
                             f"{rgba.dtype}")
        h, w = rgba.shape[:2]
        resource = self._resource(texture, w, h)
        stream = self.rt.cudaStream_t(torch.cuda.current_stream(rgba.device).cuda_stream)
        self._check(self.rt.cudaGraphicsMapResources(1, resource, stream), "cudaGraphicsMapResources")
        try:
            array = self._check(self.rt.cudaGraphicsSubResourceGetMappedArray(resource, 0, 0),
                                "cudaGraphicsSubResourceGetMappedArray")
            self._check(self.rt.cudaMemcpy2DToArrayAsync(
                array, 0, 0, rgba.data_ptr(), w * 4, w * 4, h,
                self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream), "cudaMemcpy2DToArrayAsync")
        finally:
            # Unmapping orders the copy before any GL command issued afterwards.
            self._check(self.rt.cudaGraphicsUnmapResources(1, resource, stream), "cudaGraphicsUnmapResources")

    def close(self) -> None:
        """Unregister every texture (call with the GL context current, before the textures go)."""
        for _, resource in self._registered.values():
            self.rt.cudaGraphicsUnregisterResource(resource)
        self._registered.clear()
