"""Low-level StyleGAN2 operations in plain PyTorch (CPU and CUDA alike).

EG3D ref §1.3: FIR resampling with the [1,3,3,1] kernel, bias + activation with gain and clamp,
and the weight-modulated convolution. Everything is written for clarity first; the expensive
paths (modulated conv) use single dense convolutions where the batch allows it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def fir_filter(device: torch.device | None = None) -> torch.Tensor:
    """The separable [1,3,3,1] low-pass kernel as a normalised 4x4 tensor (sums to 1)."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    f = torch.outer(k, k)
    return f / f.sum()


class _BiasActGrad(torch.autograd.Function):
    """clamp(act(x + b) * gain) that keeps only its output for backward.

    Autograd through the separate steps keeps x + b, the activation and the scaled values (three tensors of
    x's size per layer: most of a training step's memory). The derivative is recomputed from the output
    alone: gain > 0 keeps signs, so y > 0 tells the activation's slope, and |y| < clamp where the clamp did
    not cut. The backward is written in differentiable ops, so R1's double backward goes through it.
    """

    @staticmethod
    def forward(ctx, x, b, slope: float, gain: float, clamp: float | None, dim: int):
        if b is not None:
            shape = [1] * x.ndim
            shape[dim] = -1
            x = x + b.reshape(shape)
        else:
            x = x.clone()
        if slope != 1:
            x = F.leaky_relu_(x, slope)
        if gain != 1:
            x = x.mul_(gain)
        if clamp is not None:
            x = x.clamp_(-clamp, clamp)
        ctx.save_for_backward(x)
        ctx.slope, ctx.gain, ctx.clamp, ctx.dim, ctx.has_bias = slope, gain, clamp, dim, b is not None
        return x

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return _bias_act_backward(dy, y, ctx.slope, ctx.gain, ctx.clamp, ctx.dim, ctx.has_bias)


def _bias_act_backward(dy, y, slope, gain, clamp, dim, has_bias):
    factor = torch.where(y > 0, gain, gain * slope).to(dy.dtype) if slope != 1 else None
    if clamp is not None:
        keep = y.abs() < clamp
        factor = keep.to(dy.dtype) * (gain if factor is None else factor)
    dx = dy * factor if factor is not None else dy * gain
    db = None
    if has_bias:
        dims = [d for d in range(dx.ndim) if d != dim % dx.ndim]
        db = dx.sum(dim=dims)
    return dx, db, None, None, None, None


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float = 1.0,
             clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """y = clamp(act(x + b) * gain); act is 'linear' or 'lrelu' (slope 0.2, built-in gain sqrt 2).

    Without autograd the steps after the first run in place (same values, a quarter of the memory
    traffic on the large super-resolution tensors); `x` itself is never modified. With autograd one
    function keeps only the output for backward (_BiasActGrad).
    """
    if act == "lrelu":
        gain = gain * SQRT2
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)) \
            and (act == "lrelu" or clamp is not None):
        return _BiasActGrad.apply(x, b, 0.2 if act == "lrelu" else 1.0, gain, clamp, dim)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
        owned = True
    else:
        owned = False
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    if act == "lrelu":
        x = F.leaky_relu_(x, 0.2) if (owned and inplace) else F.leaky_relu(x, 0.2)
        owned = True
    if gain != 1:
        x = x.mul_(gain) if (owned and inplace) else x * gain
        owned = True
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if (owned and inplace) else x.clamp(-clamp, clamp)
    return x


def _fir(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float) -> torch.Tensor:
    """Pad, then convolve every channel with the 2-D kernel f (true convolution)."""
    c = x.shape[1]
    x = F.pad(x, pad)
    w = (f * gain).flip(0, 1).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, w, groups=c)


def zero_insert(x: torch.Tensor) -> torch.Tensor:
    """[N,C,H,W] -> [N,C,2H,2W] with the input at even positions and zeros elsewhere."""
    n, c, h, w = x.shape
    y = x.new_zeros(n, c, h, 2, w, 2)
    y[:, :, :, 0, :, 0] = x
    return y.reshape(n, c, 2 * h, 2 * w)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling (skip-architecture image path): zero-insert, pad (2,1), filter x4."""
    return _fir(zero_insert(x), f, (2, 1, 2, 1), gain=4.0)


def filter2d(x: torch.Tensor, f: torch.Tensor, pad: int) -> torch.Tensor:
    """Filter with f (gain 1) after padding `pad` on every side."""
    return _fir(x, f, (pad, pad, pad, pad), gain=1.0)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     demodulate: bool = True, up: int = 1, fir: torch.Tensor | None = None,
                     fused: bool = True, noise: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    x [N,I,H,W], weight [O,I,k,k], styles [N,I]. w' = W * s; with demodulation
    w'' = w' * rsqrt(sum_{i,kh,kw} w'^2 + 1e-8). up=2 runs a stride-2 transposed convolution
    (zero-insert + flipped kernel) followed by the FIR with gain 4 and padding 1, giving 2H x 2W.
    `fused` computes per-sample weights (grouped conv); otherwise x*s -> conv -> *d, which is the
    same math and cheaper for large batches with autograd. `noise` [N|1,1,H',W'] is added after
    demodulation, before bias. The convolution runs in x's dtype (float16 in mixed-precision blocks);
    styles and demodulation coefficients are computed in the weights' dtype.
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    if demodulate and x.dtype == torch.float16:
        # Keep float16 products in range: scale each output filter to max |W| = 1/sqrt(fan_in) and each
        # style vector to max |s| = 1; demodulation divides both factors out again.
        weight = weight / (weight.abs().amax(dim=(1, 2, 3), keepdim=True) * math.sqrt(i * kh * kw))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    w = weight[None] * styles[:, None, :, None, None]  # [N,O,I,k,k]
    dcoefs = (w.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt() if demodulate else None  # [N,O]
    pad = kh // 2
    if not fused:
        x = x * styles.to(x.dtype)[:, :, None, None]
        x = _conv(x, weight.to(x.dtype), up, pad, fir, groups=1)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype)[:, :, None, None]
    else:
        if dcoefs is not None:
            w = w * dcoefs[:, :, None, None, None]
        if n == 1:
            x = _conv(x, w[0].to(x.dtype), up, pad, fir, groups=1)
        else:
            x = x.reshape(1, n * i, *x.shape[2:])
            x = _conv(x, w.reshape(n * o, i, kh, kw).to(x.dtype), up, pad, fir, groups=n)
            x = x.reshape(n, o, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def _conv(x: torch.Tensor, w: torch.Tensor, up: int, pad: int, fir: torch.Tensor | None,
          groups: int) -> torch.Tensor:
    """Plain (up=1) or 2x-upsampling convolution; w is [groups*O, I, k, k]."""
    if up == 1:
        return F.conv2d(x, w, padding=pad, groups=groups)
    if up != 2 or fir is None:
        raise ValueError("only up=1, or up=2 with a FIR kernel, is supported")
    # Transposed conv wants [groups*I, O, k, k]: swap the in/out axes within each group.
    go, i, k, _ = w.shape
    o = go // groups
    wt = w.reshape(groups, o, i, k, k).transpose(1, 2).reshape(groups * i, o, k, k)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)  # [.., 2H+1, 2W+1] for k=3
    return _fir(x, fir, (1, 1, 1, 1), gain=4.0)  # 4-tap FIR, pad 1 -> 2H x 2W
