"""Camera-conditioned dual discriminator (EG3D ref §6.3), with the original state_dict names (ref §2.4).

The final image and the neural-rendered raw image (resized to the same size) are stacked into six
channels and judged by a StyleGAN2 ResNet discriminator whose 4x4 epilogue output is projected onto
an embedding of the camera label.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core import ops
from core.layers import Conv2dLayer, FullyConnectedLayer, block_dtype
from core.mapping import MappingNetwork


def filtered_resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize (the original's 'antialiased' filter mode)."""
    if img.shape[-1] == size:
        return img
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class DiscriminatorBlock(nn.Module):
    """ResNet block: [fromrgb] -> conv0 -> conv1 (down 2), plus a 1x1 down-2 skip, both scaled by sqrt(.5)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 conv_clamp: float | None, use_fp16: bool = False):
        super().__init__()
        self.in_channels, self.use_fp16 = in_channels, use_fp16
        self.precision = "fp32"  # see core.layers.set_precision
        self.register_buffer("resample_filter", ops.fir_filter())
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        """Returns features in the block's dtype (float16 for a use_fp16 block under 'auto' on CUDA or 'fp16')."""
        dtype = block_dtype(self.use_fp16, self.precision, img.device)
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        else:
            x = x.to(dtype)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the per-group std of features as extra channels (StyleGAN2 minibatch standard deviation)."""
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size else n
    if n % g:
        raise ValueError(f"batch {n} per process must be a multiple of the mbstd group size {g}")
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4]).reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: mbstd -> conv -> fc -> out (cmap_dim), projected onto the camera embedding."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int = 4, mbstd_group_size: int = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.cmap_dim, self.mbstd_group_size, self.mbstd_num_channels = cmap_dim, mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.mbstd_num_channels > 0:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.fc(self.conv(x).flatten(1))
        x = self.out(x)
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)


class DualDiscriminator(nn.Module):
    """D({'image' [N,3,R,R], 'image_raw' [N,3,r,r]}, c [N,25]) -> logits [N,1].

    Constructor keywords match the original so that its `D.init_kwargs` rebuild this module. The
    num_fp16_res highest-resolution blocks compute in float16 when core.layers.set_precision selects
    'auto' (on CUDA) or 'fp16'; the default 'fp32' and the epilogue compute in float32.
    """

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4,
                 conv_clamp: float | None = 256, cmap_dim: int | None = None, disc_c_noise: float = 0.0,
                 block_kwargs: dict | None = None, mapping_kwargs: dict | None = None,
                 epilogue_kwargs: dict | None = None):
        super().__init__()
        if architecture != "resnet":
            raise ValueError("only the 'resnet' discriminator architecture is supported")
        self.init_kwargs = copy.deepcopy(dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, architecture=architecture,
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp, cmap_dim=cmap_dim, disc_c_noise=disc_c_noise,
            block_kwargs=dict(block_kwargs or {}), mapping_kwargs=dict(mapping_kwargs or {}),
            epilogue_kwargs=dict(epilogue_kwargs or {})))
        img_channels *= 2
        self.c_dim, self.img_resolution, self.disc_c_noise = c_dim, img_resolution, disc_c_noise
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        cmap_dim = channels[4] if cmap_dim is None else cmap_dim
        self.register_buffer("resample_filter", ops.fir_filter())
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        for res in self.block_resolutions:
            in_ch = channels[res] if res < img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, channels[res], channels[res // 2], img_channels,
                                                        conv_clamp, use_fp16=res >= fp16_resolution))
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        epi = {k: v for k, v in (epilogue_kwargs or {}).items() if k in ("mbstd_group_size", "mbstd_num_channels")}
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, conv_clamp=conv_clamp, **epi)

    def forward(self, img: dict[str, torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        image = img["image"]
        raw = filtered_resize(img["image_raw"], image.shape[-1])
        x, stacked = None, torch.cat([image, raw], dim=1)
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, stacked)
        if self.disc_c_noise > 0:
            c = c + torch.randn_like(c) * c.std(dim=0) * self.disc_c_noise
        cmap = self.mapping(None, c)
        return self.b4(x, cmap)
