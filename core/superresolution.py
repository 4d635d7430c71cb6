"""Superresolution modules: neural-rendered image + features -> final image (EG3D ref §1.9).

Two StyleGAN2 synthesis blocks driven by the *last* w only. Class names, constructor arguments and
state_dict layout follow the original release so that its pickles map onto them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core import ops
from core.synthesis import SynthesisBlock


class _Superresolution(nn.Module):
    """Shared forward: resize to input_resolution if needed, then block0 and block1.

    Subclasses set `input_resolution`, `resize_when` ('!=' or '<'), the block widths and whether the
    module has its own resample_filter buffer.
    """

    input_resolution = 128
    resize_when = "!="
    block0_upsamples = True
    widths = (128, 64)
    own_filter = True

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool = True,
                 fused_modconv_default: bool | str = True, sr_widths: tuple[int, int] | None = None, **_ignored):
        """sr_widths (extension for small CPU models, via sr_kwargs) replaces the class's block widths."""
        super().__init__()
        widths = tuple(sr_widths) if sr_widths else self.widths
        self.img_resolution, self.sr_antialias = img_resolution, sr_antialias
        use_fp16 = sr_num_fp16_res > 0
        block = dict(w_dim=512, img_channels=3, use_fp16=use_fp16, conv_clamp=256 if use_fp16 else None,
                     fused_modconv_default=fused_modconv_default)
        res0 = self.input_resolution * (2 if self.block0_upsamples else 1)
        self.block0 = SynthesisBlock(channels, widths[0], resolution=res0, is_last=False,
                                     upsample=self.block0_upsamples, **block)
        self.block1 = SynthesisBlock(widths[0], widths[1], resolution=res0 * 2, is_last=True, **block)
        if self.own_filter:
            self.register_buffer("resample_filter", ops.fir_filter())

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, noise_mode: str = "none",
                return_raw: bool = False, **block_kwargs):
        """rgb [N,3,r,r], x [N,32,r,r], ws [N,num_ws,512] -> image [N,3,R,R].

        With return_raw, also returns the raw image as the original hands it back: a block0 that does
        not upsample adds its ToRGB output to `rgb` in place when rgb was not resized (ref §1.9 quirk).
        """
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        size = x.shape[-1]
        resize = size != self.input_resolution if self.resize_when == "!=" else size < self.input_resolution
        if resize:
            kw = dict(size=(self.input_resolution, self.input_resolution), mode="bilinear",
                      align_corners=False, antialias=self.sr_antialias)
            x, rgb = F.interpolate(x, **kw), F.interpolate(rgb, **kw)
        # NHWC lets oneDNN run the large convolutions without layout reorders (about 1.5x on CPU).
        x = x.contiguous(memory_format=torch.channels_last)
        x, img0 = self.block0(x, rgb, ws, noise_mode=noise_mode, **block_kwargs)
        _, img = self.block1(x, img0, ws, noise_mode=noise_mode, **block_kwargs)
        if not return_raw:
            return img
        raw = img0 if (not self.block0_upsamples and not resize) else None
        return img, raw


class SuperresolutionHybrid8XDC(_Superresolution):
    """128 -> 512 (FFHQ/AFHQ): blocks 32->256 @256², 256->128 @512²; no own resample_filter."""

    widths = (256, 128)
    own_filter = False


class SuperresolutionHybrid8X(_Superresolution):
    """128 -> 512: blocks 32->128 @256², 128->64 @512²."""


class SuperresolutionHybrid4X(_Superresolution):
    """128 -> 256: NoUp block 32->128 @128², then 128->64 @256²; resizes only smaller inputs."""

    resize_when = "<"
    block0_upsamples = False


class SuperresolutionHybrid2X(_Superresolution):
    """64 -> 128 (ShapeNet): NoUp block 32->128 @64², then 128->64 @128²."""

    input_resolution = 64
    block0_upsamples = False


class SuperresolutionHybridDeepfp32(_Superresolution):
    """Legacy 128 -> 256 variant of 4X without antialiased resizing."""

    resize_when = "<"
    block0_upsamples = False

    def __init__(self, channels, img_resolution, sr_num_fp16_res, **kw):
        kw.pop("sr_antialias", None)
        super().__init__(channels, img_resolution, sr_num_fp16_res, False, **kw)


class SuperresolutionNone(nn.Module):
    """Our extension for image sizes without an original module: the neural rendering, resized
    (bilinear, antialiased) to the image resolution when it differs; no weights."""

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int = 0, sr_antialias: bool = True,
                 **_ignored):
        super().__init__()
        self.img_resolution, self.sr_antialias = img_resolution, sr_antialias

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, noise_mode: str = "none",
                return_raw: bool = False, **_ignored):
        img = rgb
        if rgb.shape[-1] != self.img_resolution:
            img = F.interpolate(rgb, size=(self.img_resolution, self.img_resolution), mode="bilinear",
                                align_corners=False, antialias=self.sr_antialias)
        return (img, None) if return_raw else img


SR_CLASSES = {cls.__name__: cls for cls in (SuperresolutionHybrid8XDC, SuperresolutionHybrid8X,
                                            SuperresolutionHybrid4X, SuperresolutionHybrid2X,
                                            SuperresolutionHybridDeepfp32, SuperresolutionNone)}


def sr_class(name: str) -> type[_Superresolution]:
    """Resolve 'training.superresolution.SuperresolutionHybrid8XDC' (or the bare class name)."""
    short = name.rsplit(".", 1)[-1]
    if short not in SR_CLASSES:
        raise ValueError(f"unknown superresolution module {name!r}; known: {', '.join(SR_CLASSES)}")
    return SR_CLASSES[short]
