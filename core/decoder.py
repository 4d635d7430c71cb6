"""OSG decoder: averaged tri-plane features -> raw density + 32 feature channels (EG3D ref §1.5)."""
from __future__ import annotations

import torch
from torch import nn

from core.layers import FullyConnectedLayer


class OSGDecoder(nn.Module):
    """FC 32->64, softplus, FC 64->(1+32). sigma stays raw; features = sigmoid * 1.002 - 0.001."""

    def __init__(self, n_features: int, options: dict):
        super().__init__()
        self.hidden_dim = 64
        lr_mul = options.get("decoder_lr_mul", 1)
        self.net = nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=lr_mul),
            nn.Softplus(),
            FullyConnectedLayer(self.hidden_dim, 1 + options["decoder_output_dim"], lr_multiplier=lr_mul),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [..., C] (already averaged over the three planes) -> (sigma [...,1], rgb [...,32])."""
        shape = features.shape[:-1]
        x = self.net(features.reshape(-1, features.shape[-1])).reshape(*shape, -1)
        sigma = x[..., :1]
        rgb = torch.sigmoid(x[..., 1:])
        # widened sigmoid (MipNeRF); in place when no gradient is needed (same values, less traffic)
        rgb = rgb.mul_(1 + 2 * 0.001).sub_(0.001) if not rgb.requires_grad else rgb * (1 + 2 * 0.001) - 0.001
        return sigma, rgb
