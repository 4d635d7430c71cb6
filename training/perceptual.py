"""Perceptual distances for GAN inversion, with no download: the checkpoint's own discriminator, or
VGG16 from a local weights file.

Both compare feature maps the way LPIPS does (Zhang et al. 2018, without its learned channel weights):
each layer's features are unit-normalised along channels, and the squared difference is averaged
over positions and summed over layers:  d(x, y) = sum_l mean_hw || f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)| ||².
Images are [N,3,H,W] in [-1,1].
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoint import read_networks
from core.errors import CheckpointError, StudioError
from training.discriminator import DualDiscriminator, filtered_resize


def feature_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS-style distance between two lists of feature maps [N,C,H,W] -> [N]."""
    total = 0
    for fa, fb in zip(a, b):
        fa = fa / (fa.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
        fb = fb / (fb.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
        total = total + (fa - fb).square().sum(dim=1).mean(dim=(1, 2))
    return total


class DiscriminatorFeatures(nn.Module):
    """Activations after each ResNet block of the dual discriminator (image + raw image, ref §6.3)."""

    name = "discriminator features"

    def __init__(self, D: DualDiscriminator):
        super().__init__()
        self.D = D.eval().requires_grad_(False)

    def forward(self, image: torch.Tensor, raw: torch.Tensor) -> list[torch.Tensor]:
        x, stacked, feats = None, torch.cat([image, filtered_resize(raw, image.shape[-1])], dim=1), []
        for res in self.D.block_resolutions:
            x = getattr(self.D, f"b{res}")(x, stacked)
            feats.append(x)
        return feats


# torchvision's vgg16 `features` indices of the 13 3x3 convolutions; LPIPS reads relu1_2, relu2_2,
# relu3_3, relu4_3 and relu5_3 (the ReLU after convolutions 2, 4, 7, 10 and 13).
_VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_VGG_POOL_AFTER = (1, 3, 6, 9)  # conv numbers (0-based) followed by 2x2 max pooling
_VGG_TAPS = (1, 3, 6, 9, 12)


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk (torchvision's `features.N.weight` names) -> LPIPS's five ReLU maps."""

    name = "VGG16 features"

    def __init__(self):
        super().__init__()
        self.features = nn.ModuleDict()
        c_in = 3
        for idx, width in zip(_VGG_CONVS, _VGG_WIDTHS):
            self.features[str(idx)] = nn.Conv2d(c_in, width, 3, padding=1)
            c_in = width
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor, raw: torch.Tensor | None = None) -> list[torch.Tensor]:
        x = ((image + 1) / 2 - self.mean) / self.std
        if x.shape[-1] > 256:  # as the StyleGAN2 projector: perceptual features at 256² at most
            x = F.interpolate(x, size=(256, 256), mode="area")
        feats = []
        for i, idx in enumerate(_VGG_CONVS):
            x = F.relu(self.features[str(idx)](x))
            if i in _VGG_TAPS:
                feats.append(x)
            if i in _VGG_POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return feats


def load_vgg16(path: str | os.PathLike) -> VGG16Features:
    """VGG16 weights from a local file (torchvision's vgg16 state_dict; classifier weights are ignored),
    read with torch.load(weights_only=True)."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise StudioError(f"--vgg {path}: no such file") from None
    except Exception as e:  # torch raises many types for files that are not its own
        raise StudioError(f"--vgg {path} is not a readable torch weights file ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise StudioError(f"--vgg {path}: expected a VGG16 state_dict")
    net = VGG16Features()
    wanted = {k for k in net.state_dict() if k.startswith("features.")}
    found = {k: v for k, v in state.items() if k in wanted}
    missing = sorted(wanted - set(found))
    if missing:
        raise StudioError(f"--vgg {path}: not VGG16 weights ({len(missing)} missing, e.g. {missing[0]})")
    bad = [k for k, v in found.items() if not isinstance(v, torch.Tensor) or v.shape != net.state_dict()[k].shape]
    if bad:
        raise StudioError(f"--vgg {path}: weight {bad[0]} has the wrong shape for VGG16")
    net.load_state_dict(found, strict=False)
    return net.eval().requires_grad_(False)


def load_discriminator(path: str | os.PathLike) -> DualDiscriminator | None:
    """The discriminator stored with a generator (original snapshot pickle or our .ckpt), or None."""
    f = read_networks(path)
    if f.D is None:
        return None
    try:
        D = DualDiscriminator(**{k: v for k, v in (f.D_kwargs or {}).items() if k != "class_name"})
        D.load_state_dict(f.D)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{f.path}: cannot rebuild its discriminator ({str(e).splitlines()[0][:160]})") from None
    return D.eval().requires_grad_(False)
