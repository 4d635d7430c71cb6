"""Pose regressor: a small CNN that reads an object's view (yaw, elevation) off one image.

It gives the camera estimate its starting views in one forward pass, instead of a search over the
whole pose prior. Input: the image area-downsampled to 32² plus its foreground mask (pixels away from
the plain background), [N,4,32,32]. Output: a distribution over yaw in `YAW_BINS` bins all around
(a near-symmetric object leaves several yaws plausible: the caller keeps the best few peaks) and the
elevation above the horizon (degrees, regressed). It is trained on views at known cameras drawn from
the pose prior of the model's training set (yaw uniform, elevation uniform on the sphere band): the
checkpoint's own samples (any model) and, for a model of the toys dataset, the dataset's own tracer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

YAW_BINS = 72
"""5 degree bins."""
INPUT = 32
ELEVATION_SCALE = 45.0
"""The elevation head predicts degrees / this."""


def foreground_mask(image: torch.Tensor, white_back: bool = True, threshold: float = 0.08) -> torch.Tensor:
    """[N,3,R,R] in [-1,1] -> [N,1,R,R] soft mask of pixels away from the plain background colour."""
    back = 1.0 if white_back else -1.0
    dist = (image - back).abs().amax(dim=1, keepdim=True) / 2
    return (dist / threshold).clamp(0, 1)


def pose_input(image: torch.Tensor, white_back: bool = True) -> torch.Tensor:
    """Images [N,3,R,R] in [-1,1] -> the regressor's input [N,4,32,32] (area-downsampled image and mask)."""
    small = F.interpolate(image.float(), size=(INPUT, INPUT), mode="area")
    return torch.cat([small, foreground_mask(small, white_back) * 2 - 1], dim=1)


class PoseNet(nn.Module):
    """[N,4,32,32] -> (yaw logits [N,YAW_BINS], elevation [N] in degrees)."""

    def __init__(self, width: int = 24):
        super().__init__()
        c = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        cin = 4
        for cout in c:  # 32 -> 16 -> 8 -> 4
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(cout, cout, 3, stride=2, padding=1), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Linear(c[-1] * 16, 64)
        self.yaw = nn.Linear(64, YAW_BINS)
        self.elevation = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.hidden(self.features(x).flatten(1)))
        return self.yaw(h), self.elevation(h)[:, 0] * ELEVATION_SCALE


def yaw_bin_centres(device: torch.device | str = "cpu") -> torch.Tensor:
    """[YAW_BINS] bin centres in radians, -pi..pi."""
    return (torch.arange(YAW_BINS, device=device) + 0.5) * (2 * math.pi / YAW_BINS) - math.pi


def soft_yaw_target(yaw: torch.Tensor, sigma_bins: float = 1.0) -> torch.Tensor:
    """Yaws [N] (radians) -> [N,YAW_BINS] circular Gaussian class weights (a smooth target: neighbouring
    bins are near misses, not wrong classes)."""
    d = yaw[:, None] - yaw_bin_centres(yaw.device)[None]
    d = torch.atan2(torch.sin(d), torch.cos(d)) / (2 * math.pi / YAW_BINS)
    w = torch.exp(-0.5 * (d / sigma_bins) ** 2)
    return w / w.sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class PoseGuess:
    """One hypothesis: yaw (studio radians), elevation (degrees), probability mass of its peak."""
    yaw: float
    elevation: float
    weight: float


def pose_hypotheses(net: PoseNet, image: torch.Tensor, white_back: bool = True, count: int = 3,
                    min_weight: float = 0.05) -> list[PoseGuess]:
    """The best `count` yaw peaks of the regressor's distribution for one image [1,3,R,R], best first;
    peaks holding less than `min_weight` of the mass are dropped (the best is always kept)."""
    with torch.no_grad():
        logits, elev = net(pose_input(image, white_back).to(next(net.parameters()).device))
    p = logits[0].softmax(0).cpu()
    centres = yaw_bin_centres()
    peaks = [i for i in range(YAW_BINS) if p[i] >= p[i - 1] and p[i] >= p[(i + 1) % YAW_BINS]]
    guesses = []
    for i in sorted(peaks, key=lambda k: -float(p[k])):
        near = [(i + k) % YAW_BINS for k in (-2, -1, 0, 1, 2)]
        mass = p[near]
        # circular mean of the peak's neighbourhood: finer than a bin
        yaw = math.atan2(float((mass * centres[near].sin()).sum()), float((mass * centres[near].cos()).sum()))
        guesses.append(PoseGuess(yaw, float(elev[0]), float(mass.sum())))
    kept = [g for g in guesses[:count] if g.weight >= min_weight]
    return kept or guesses[:1]
