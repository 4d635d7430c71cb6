"""StyleGAN2 synthesis network ("skip" architecture) that paints the tri-plane tensor.

EG3D ref §1.3. The backbone renders a 96-channel 256² image = 3 planes x 32 channels. The same
blocks (with 3 output channels) build the superresolution modules (§1.9).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from core import ops
from core.layers import FullyConnectedLayer, block_dtype
from core.mapping import MappingNetwork


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + lrelu (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 conv_clamp: float | None = None, fused_modconv_default: bool | str = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.fused_modconv_default = fused_modconv_default
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", ops.fir_filter())
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                fused_modconv: bool | None = None, gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution,
                                device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                                 fir=self.resample_filter, noise=noise,
                                 fused=_fused(fused_modconv, self.fused_modconv_default, self.training))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation: features -> image channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, fused_modconv_default: bool | str = True):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.fused_modconv_default = fused_modconv_default
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False,
                                 fused=_fused(fused_modconv, self.fused_modconv_default, self.training))
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


def _fused(requested: bool | None, default: bool | str, training: bool) -> bool:
    """'inference_only' means: grouped (fused) modulated conv in eval mode, x*s -> conv -> *d in training."""
    if requested is not None:
        return requested
    if default == "inference_only":
        return not training
    return bool(default)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: [const |] conv0 (up x2) -> conv1 -> torgb.

    The image path upsamples the incoming image and adds this block's ToRGB output. With
    `upsample=False` (the superresolution's SynthesisBlockNoUp) neither conv0 nor the image is
    upsampled.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, is_last: bool, architecture: str = "skip", use_fp16: bool = False,
                 conv_clamp: float | None = None, fused_modconv_default: bool | str = True,
                 upsample: bool = True):
        super().__init__()
        if architecture != "skip":
            raise ValueError("only the 'skip' synthesis architecture is used by EG3D")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.is_last, self.use_fp16, self.upsample = is_last, use_fp16, upsample
        self.precision = "fp32"  # see core.layers.set_precision
        self.fused_modconv_default = fused_modconv_default
        self.num_conv, self.num_torgb = 0, 1
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        self.register_buffer("resample_filter", ops.fir_filter())
        common = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp,
                      fused_modconv_default=fused_modconv_default)
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2 if upsample else 1, **common)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                fused_modconv_default=fused_modconv_default)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "random", fused_modconv: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ws [N, num_conv + num_torgb, w_dim]; returns (features in the block's dtype, float32 image).

        The features are computed in block_dtype (float16 for a use_fp16 block under precision 'auto'
        on CUDA or 'fp16'); styles, the image path and the ToRGB sum stay float32.
        """
        dtype = block_dtype(self.use_fp16, self.precision, ws.device)
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        if img is not None and self.upsample:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N,num_ws,w_dim] -> image [N,img_channels,R,R]; blocks from 4² up to img_resolution."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=res == img_resolution,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # Block k's torgb shares its w with conv0 of block k+1 (EG3D ref §1.3).
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img


class Generator(nn.Module):
    """StyleGAN2 generator = synthesis + mapping (the tri-plane backbone; registration order fixes keys)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)
