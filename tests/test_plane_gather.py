"""The CPU tri-plane sampler (core.plane_gather) against grid_sample: values and gradients."""
from __future__ import annotations

import torch

from core.plane_gather import gather_triplane
from core.renderer import grid_sample_triplane, planes_table, sample_triplane, triplane_uv


def _points(n: int, p: int, dtype=torch.float32) -> torch.Tensor:
    """Points inside the box, on its faces and edges, and far outside it (box_warp 1: the box is ±0.5)."""
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(n, p, 3, generator=g, dtype=dtype) - 0.5
    pts[:, :8] = pts[:, :8].sign() * (pts[:, :8].abs() + 0.6)  # off all three planes: zero padding
    pts[:, 8:16] = torch.tensor([0.5, -0.5, 0.5], dtype=dtype)  # the corner of the box
    pts[:, 16:24, 0] = 0.5 - 1 / 1024  # inside the last texel: one corner weight on the padding
    return pts


def test_gather_matches_grid_sample_values_and_gradients():
    torch.manual_seed(1)
    planes = torch.randn(2, 3, 32, 16, 16, requires_grad=True)
    pts = _points(2, 3000)
    grad_out = torch.randn(2, 3000, 32)
    outs, grads = [], []
    for sampler in (grid_sample_triplane, sample_triplane):
        planes.grad = None
        out = sampler(planes_table(planes), pts, 1.0)
        out.backward(grad_out)
        if sampler is sample_triplane:  # on CPU the renderer's sampler is the gather
            assert "WeightedGather" in out.grad_fn.next_functions[0][0].name()
        outs.append(out.detach())
        grads.append(planes.grad.clone())
    assert outs[0].abs().max() > 0.5 and grads[0].abs().max() > 1.0
    assert (outs[0] - outs[1]).abs().max() < 1e-6
    assert (grads[0] - grads[1]).abs().max() < 1e-5
    assert outs[1][:, :8].abs().max() == 0  # far outside: nothing sampled, as grid_sample's zero padding


def test_gather_gradients_are_exact_in_double():
    """Finite differences for both inputs (planes and the sampled points), in float64."""
    planes = torch.randn(2, 3, 4, 5, 7, dtype=torch.double, requires_grad=True)
    # random points, some off the planes (not the exact edge cases above, where the gradient has kinks)
    pts = (_points(2, 40, torch.double)[:, 24:] * 1.3).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: gather_triplane(planes_table(a), triplane_uv(b, 1.0)), (planes, pts))
    ref = grid_sample_triplane(planes_table(planes), pts, 1.0)
    ours = gather_triplane(planes_table(planes), triplane_uv(pts, 1.0))
    g_ref = torch.autograd.grad((ref ** 2).sum(), [planes, pts])
    g_ours = torch.autograd.grad((ours ** 2).sum(), [planes, pts])
    assert (ref - ours).abs().max() < 1e-12
    assert all((a - b).abs().max() < 1e-10 for a, b in zip(g_ref, g_ours))


def test_gather_reads_any_layout_and_box_warp():
    planes = torch.randn(1, 3, 8, 6, 6)
    pts = _points(1, 500)
    ref = grid_sample_triplane(planes.reshape(3, 8, 6, 6), pts, 2.0)
    ours = gather_triplane(planes.reshape(3, 8, 6, 6), triplane_uv(pts, 2.0))  # NCHW: the texel rows are copied
    assert (ours - ref).abs().max() < 1e-6 and ours.abs().max() > 0.1
