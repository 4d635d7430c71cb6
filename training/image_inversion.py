"""One inversion of an image file, as `main.py invert`, the studio's Invert panel and the server run it:
the target prepared for the model, the loss chosen, the Inverter run with its seed, the inverted noise maps
carried by the generator that shows the result, and the settings a saved latent records.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.latents import SavedLatent, apply_latent, prepare_image
from core.progress import Progress
from training.inversion import InversionOptions, InversionResult, Inverter
from training.perceptual import DiscriminatorFeatures, load_discriminator, load_vgg16

PIXEL_LOSS = "multi-scale pixel MSE only (the checkpoint has no discriminator; --vgg FILE adds a perceptual term)"
D_LOSS = "multi-scale pixel MSE + the checkpoint's discriminator features"
VGG_LOSS = "multi-scale pixel MSE + VGG16 features (--vgg)"


def perceptual_loss(network: str | os.PathLike, device: torch.device,
                    vgg: str | os.PathLike | None = None) -> tuple[nn.Module | None, str]:
    """(feature extractor or None, the loss's name): local VGG16 weights when given, else the checkpoint's
    discriminator features when it stores a discriminator, else pixels only."""
    if vgg:
        return load_vgg16(vgg).to(device), VGG_LOSS
    D = load_discriminator(network)
    return (None, PIXEL_LOSS) if D is None else (DiscriminatorFeatures(D.to(device)), D_LOSS)


@dataclass(frozen=True)
class Target:
    """An image file prepared for a model: the tensor [1,3,H,W] in [-1,1] and what preparing it did."""
    path: Path
    image: torch.Tensor
    prepared: str


def prepare_target(G: nn.Module, image: str | os.PathLike, frame: float | None = None) -> Target:
    """Read `image` at G's resolution on G's background (`frame`: re-frame a photo, core.latents)."""
    tensor, prepared = prepare_image(image, G.img_resolution, G.options.white_back, frame)
    return Target(Path(image).resolve(), tensor, prepared)


@dataclass
class ImageInversion:
    """An inverted image: the Inverter's result, the generator that renders it (tuned weights, or the given
    one carrying the inverted noise maps) and the settings to save with it."""
    result: InversionResult
    G: nn.Module
    settings: dict


def invert_image(G: nn.Module, target: Target, options: InversionOptions, label: torch.Tensor | None,
                 perceptual: tuple[nn.Module | None, str], progress: Progress | None = None, *,
                 network: str | os.PathLike = "", fov_deg: float | None = None,
                 on_best: Callable | None = None, on_start: Callable[[Inverter], None] | None = None
                 ) -> ImageInversion:
    """Invert `target` into G (modified: pass a copy where G is shared) with the camera label [25] given, or
    estimated when None. `perceptual` is what perceptual_loss returns; `network` is recorded in settings;
    `on_start` gets the Inverter before it runs (its loss history grows as it goes)."""
    torch.manual_seed(options.seed)   # the same settings give the same result in every front end
    inverter = Inverter(G, target.image, options, perceptual[0], progress, on_best=on_best)
    if on_start is not None:
        on_start(inverter)
    result = inverter.run(label, fov_deg)
    shown = result.G
    if shown is None:
        shown = G
        apply_latent(G, SavedLatent(result.ws, result.camera, {}, result.noise))
    settings = {"network": str(Path(network).resolve()) if network else "", "image": str(target.path),
                "image_preparation": target.prepared, "loss": perceptual[1],
                "camera": "given" if label is not None else "estimated", "space": options.space,
                "steps": options.steps, "starts": options.starts, "tune": options.tune_steps,
                "yaw_deg": math.degrees(result.yaw), "pitch_deg": math.degrees(result.pitch),
                "fov_deg": result.fov_deg, "final_loss": result.loss, "interrupted": result.interrupted,
                "seconds": result.seconds, "seed": options.seed}
    return ImageInversion(result, shown, settings)
