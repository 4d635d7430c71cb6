"""The fused bias + activation + clamp keeps only its output for backward (issue 30: a training step's memory):
values, gradients and R1's double backward must equal those of the plain step-by-step expression."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core import ops


def _plain(x, b, act, gain, clamp, dim):
    if act == "lrelu":
        gain *= ops.SQRT2
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    x = x * gain
    return x.clamp(-clamp, clamp) if clamp is not None else x


@pytest.mark.parametrize("act, clamp, bias, dim", [("lrelu", None, True, 1), ("lrelu", 0.5, True, 1),
                                                   ("linear", 0.5, True, 1), ("lrelu", None, False, 1),
                                                   ("lrelu", 0.7, True, -1)])
def test_gradients_and_double_backward_match_the_plain_expression(act, clamp, bias, dim):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(x.shape[dim], dtype=torch.float64, requires_grad=True) if bias else None
    inputs = (x, b) if bias else (x,)
    fused = lambda *a: ops.bias_act(a[0], a[1] if bias else None, act, 1.3, clamp, dim)  # noqa: E731
    plain = lambda *a: _plain(a[0], a[1] if bias else None, act, 1.3, clamp, dim)  # noqa: E731
    assert torch.equal(fused(*inputs), plain(*inputs))
    assert torch.autograd.gradcheck(fused, inputs)

    def r1(fn):  # the gradient penalty's path: d/dinputs |d(sum y^2)/dx|^2
        (gx,) = torch.autograd.grad(fn(*inputs).square().sum(), [x], create_graph=True)
        return torch.autograd.grad(gx.square().sum(), inputs)
    for got, want in zip(r1(fused), r1(plain)):
        assert torch.allclose(got, want)


def test_backward_keeps_only_the_output():
    x = torch.randn(1, 8, 64, 64, requires_grad=True)
    b = torch.zeros(8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        ops.bias_act(x, b, "lrelu", clamp=256.0)
    assert sum(saved) == x.numel()  # one tensor of x's size (the plain steps keep three)
