"""The scene representation that every synthetic family builds and training.synthetic renders: coloured
primitives (sphere, box, torus, cylinder), each with a centre, size and rotation, blended by a smooth union.

A scene is a dict of tensors over B objects and K parts: kinds [B,K] (indices into KINDS), active [B,K],
present (the kinds that occur), centre [B,K,3], size [B,K,3], rot [B,K,3,3] and colour [B,K,3].
"""
from __future__ import annotations

import torch

KINDS = ("sphere", "box", "torus", "cylinder")


def euler_rotation(a: torch.Tensor) -> torch.Tensor:
    """XYZ Euler angles [...,3] -> rotation matrices [...,3,3]."""
    cx, cy, cz = torch.cos(a).unbind(-1)
    sx, sy, sz = torch.sin(a).unbind(-1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def _prim_sdf(p: torch.Tensor, kinds: torch.Tensor, size: torch.Tensor, present: tuple[int, ...]
              ) -> torch.Tensor:
    """Signed distances of local points p [..., 3] for primitive kinds [...] and sizes [..., 3].

    Only the kinds in `present` are evaluated (the others cannot occur in this dataset).
    """
    d = None
    for kind in present:
        if kind == 0:
            dk = p.norm(dim=-1) - size[..., 0]
        elif kind == 1:
            q = p.abs() - size * 0.8
            dk = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0) - 0.02
        elif kind == 2:
            ring = torch.stack([p[..., [0, 2]].norm(dim=-1) - size[..., 0], p[..., 1]], -1)
            dk = ring.norm(dim=-1) - 0.35 * size[..., 1]
        else:
            q = torch.stack([p[..., [0, 2]].norm(dim=-1) - size[..., 0] * 0.8, p[..., 1].abs() - size[..., 1]], -1)
            dk = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
        d = dk if d is None else torch.where(kinds == kind, dk, d)
    return d


def scene_sdf(x: torch.Tensor, scene: dict[str, torch.Tensor], smooth: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """World points x [B,P,3] -> (distance [B,P], colour [B,P,3]) by smooth union of the primitives."""
    local = torch.einsum("bkij,bpkj->bpki", scene["rot"].transpose(-1, -2),
                         x[:, :, None, :] - scene["centre"][:, None])
    kinds = scene["kinds"][:, None].expand(local.shape[:3])
    size = scene["size"][:, None].expand(local.shape)
    d = _prim_sdf(local, kinds, size, tuple(int(k) for k in scene["present"]))
    if d.shape[-1] == 1:
        return d[..., 0], scene["colour"][:, None, 0].expand(*d.shape[:2], 3)
    d = torch.where(scene["active"][:, None], d, torch.full_like(d, 10.0))
    # Smooth minimum (log-sum-exp) and colour weights from the same soft assignment.
    w = torch.softmax(-d / smooth, dim=-1)
    dist = -smooth * torch.logsumexp(-d / smooth, dim=-1)
    colour = torch.einsum("bpk,bkc->bpc", w, scene["colour"])
    return dist, colour
