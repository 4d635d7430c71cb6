"""Equalized-learning-rate layers shared by the generator and the discriminator.

EG3D ref §1.2 and §10.2: weights are stored raw and scaled at run time, so the stored tensors
(and their state_dict names `weight`, `bias`) are those of the original release.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core import ops

PRECISIONS = ("fp32", "auto", "fp16")


def block_dtype(use_fp16: bool, precision: str, device: torch.device) -> torch.dtype:
    """The dtype a block computes in (StyleGAN2-ADA mixed precision, EG3D ref §1.3 and §6.3).

    precision 'fp32' (the default of every network: renders and tools) keeps float32 everywhere;
    'auto' (the training recipe) runs the blocks built with use_fp16 in float16 on CUDA only;
    'fp16' runs them in float16 on any device (slow on CPU; for checks of the fp16 path).
    """
    if use_fp16 and (precision == "fp16" or (precision == "auto" and device.type == "cuda")):
        return torch.float16
    return torch.float32


def set_precision(module: nn.Module, precision: str) -> nn.Module:
    """Select the precision ('fp32', 'auto' or 'fp16') of every block of `module` that has a use_fp16 flag."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    for m in module.modules():
        if hasattr(m, "use_fp16"):
            m.precision = precision
    return module


class FullyConnectedLayer(nn.Module):
    """y = act(x @ (W * lr_mul / sqrt(in)).T + b * lr_mul)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = (nn.Parameter(torch.full([out_features], float(bias_init)))
                     if bias else None)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Plain (non-modulated) conv with optional 2x FIR downsampling; used by the discriminator."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: int = 1, conv_clamp: float | None = None,
                 trainable: bool = True):
        super().__init__()
        self.activation, self.down = activation, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.fir_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        weight = torch.randn(out_channels, in_channels, kernel_size, kernel_size)
        b = torch.zeros(out_channels) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", b)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.down == 2:
            # FIR (padded by 1 + conv padding), then a stride-2 conv: H -> H/2.
            x = ops.filter2d(x, self.resample_filter, pad=1 + self.padding)
            x = torch.nn.functional.conv2d(x, w, stride=2)
        else:
            x = torch.nn.functional.conv2d(x, w, padding=self.padding)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=gain, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

