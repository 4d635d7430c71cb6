"""The frame path can be captured as a CUDA graph: no host data enters the device computation.

On CUDA, indexing with a Python list or building a tensor from Python values inside a frame is a
host-to-device copy, which `torch.cuda.graph` refuses (seen on an H200, 2026-12-04: every `bench
--modes ...+graph` scenario failed on `triplane_uv`'s list index). CI has no GPU, so the frame runs
here on the meta device under a function mode that records any such host data.
"""
from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from core.bench import bench_generator
from core.cameras import frontal_label
from core.renderer import planes_table

HOST_FACTORIES = (torch.tensor, torch.as_tensor, torch.from_numpy)


def _host_index(index) -> bool:
    if isinstance(index, list):
        return True
    if isinstance(index, tuple):
        return any(_host_index(i) for i in index)
    return isinstance(index, torch.Tensor) and index.device.type == "cpu"


class HostDataWatch(TorchFunctionMode):
    """Records where a frame on the meta device touches host data (list indices, CPU tensors, factories)."""

    def __init__(self) -> None:
        super().__init__()
        self.places: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        host = func in HOST_FACTORIES or (name == "__getitem__" and _host_index(args[1])) or any(
            isinstance(a, torch.Tensor) and a.device.type == "cpu" and a.dim() > 0
            for a in tree_flatten((args, kwargs))[0])
        if host:
            self.places.append(f"{name} at " + traceback.format_stack(limit=3)[0].strip())
        return func(*args, **kwargs)


def test_frame_path_uses_no_host_data():
    G = bench_generator("small", "meta")
    z = torch.randn(1, G.z_dim, device="meta")
    c = frontal_label(G.options, device="meta", yaw=0.3, pitch=0.1)
    watch = HostDataWatch()
    with torch.no_grad(), watch:
        ws = G.mapping(z, c, truncation_psi=0.7)
        planes = G.planes(ws)
        table = planes_table(planes)
        out = G.render_planes(planes, ws, c, G.neural_rendering_resolution, table=table)
        G.render_planes(planes, ws, c, G.neural_rendering_resolution, table=table, superresolution=False)
        G(z, c, truncation_psi=0.7)
    assert out["image"].shape[-1] == G.img_resolution
    assert not watch.places, "host data in the frame path:\n" + "\n".join(sorted(set(watch.places)))


def test_watch_sees_a_list_index():
    """The watch itself: a list index on a device tensor is reported."""
    watch = HostDataWatch()
    with watch:
        torch.zeros(2, 3, device="meta")[..., [0, 2]]
    assert watch.places
