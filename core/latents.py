"""Latent codes: seed -> z exactly as the original tools draw it, and seed-list parsing."""
from __future__ import annotations

import re

import numpy as np
import torch


def z_from_seed(seed: int, z_dim: int = 512, device: torch.device | str | None = None) -> torch.Tensor:
    """The original scripts' z for a seed: RandomState(seed).randn(1, z_dim) as float32, [1, z_dim]."""
    z = np.random.RandomState(seed).randn(1, z_dim)
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)


def parse_seeds(text: str) -> list[int]:
    """'0,3-5,9' -> [0, 3, 4, 5, 9]. Raises ValueError naming the bad part."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ValueError(f"bad seed range {part!r} (expected non-negative seeds like 0,3-5)")
        seeds.extend(range(int(m[1]), int(m[2] or m[1]) + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds
