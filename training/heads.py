"""Procedural stylised heads: a synthetic family with a canonical frame and a clear front.

Every head faces +z with +y up (the frontal camera sits on +z), so pose and shape are not entangled:
what varies between objects is shape (skull proportions, ears, nose, hair style) and colour, never the
orientation. Parts are signed-distance fields: the skin parts (skull, ears, nose, neck) blend with a
smooth union, eyes, lips and hair join with a hard union so their colour edges stay crisp. Colours are
per part, with two procedural touches: irises on the eyes and a blush on the cheeks.
"""
from __future__ import annotations

import math

import torch

HAIR_STYLES = ("bald", "short", "long", "bun", "quiff")

_SKIN = torch.tensor([[0.98, 0.84, 0.72], [0.93, 0.75, 0.60], [0.82, 0.62, 0.46], [0.65, 0.45, 0.32],
                      [0.45, 0.30, 0.22], [0.62, 0.80, 0.55], [0.60, 0.72, 0.95]])
"""Skin palette: five human tones and two stylised ones (green, blue)."""
_HAIR = torch.tensor([[0.08, 0.06, 0.05], [0.30, 0.18, 0.10], [0.80, 0.62, 0.30], [0.62, 0.22, 0.08],
                      [0.75, 0.75, 0.78], [0.85, 0.30, 0.55], [0.20, 0.35, 0.85]])
_IRIS = torch.tensor([[0.25, 0.15, 0.08], [0.20, 0.40, 0.70], [0.25, 0.50, 0.25], [0.10, 0.10, 0.10]])


def random_heads(gen: torch.Generator, count: int) -> dict[str, torch.Tensor]:
    """Shape and colour parameters of `count` heads (every value a tensor with leading dim count)."""
    u = lambda *shape: torch.rand(count, *shape, generator=gen)  # noqa: E731
    pick = lambda palette: palette[torch.randint(0, len(palette), (count,), generator=gen)]  # noqa: E731
    skull = torch.stack([0.26 + 0.06 * u(), 0.32 + 0.06 * u(), 0.28 + 0.06 * u()], -1).squeeze(1)
    skin = pick(_SKIN) * (0.92 + 0.08 * u(1))
    return dict(
        skull=skull,
        ear=torch.cat([0.03 + 0.02 * u(1), 0.06 + 0.05 * u(1), 0.04 + 0.02 * u(1)], -1),
        nose=torch.cat([0.035 + 0.03 * u(1), 0.04 + 0.04 * u(1), 0.04 + 0.06 * u(1)], -1),
        eye_radius=0.03 + 0.02 * u(1),
        eye_spacing=0.08 + 0.04 * u(1),
        mouth_width=0.06 + 0.06 * u(1),
        hair_style=torch.randint(0, len(HAIR_STYLES), (count,), generator=gen),
        hairline=0.02 + 0.12 * u(1),
        skin=skin,
        hair=pick(_HAIR) * (0.85 + 0.15 * u(1)),
        iris=pick(_IRIS),
        lips=skin * torch.tensor([0.85, 0.55, 0.55]),
    )


def _ellipsoid(p: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipsoid (bound-corrected first-order form)."""
    k0 = (p / radii).norm(dim=-1)
    k1 = (p / radii.square()).norm(dim=-1).clamp(min=1e-6)
    return k0 * (k0 - 1.0) / k1


def _capsule_y(p: torch.Tensor, bottom: float, top: float, radius: torch.Tensor | float) -> torch.Tensor:
    y = p[..., 1].clamp(bottom, top)
    q = torch.stack([p[..., 0], p[..., 1] - y, p[..., 2]], -1)
    return q.norm(dim=-1) - radius


def _smin(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    h = (0.5 + 0.5 * (b - a) / k).clamp(0, 1)
    return torch.lerp(b, a, h) - k * h * (1 - h)


def head_sdf(x: torch.Tensor, head: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """World points x [B,P,3] -> (signed distance [B,P], colour [B,P,3]) of the heads in `head`."""
    col = lambda name: head[name][:, None, :]  # noqa: E731  [B,1,3] for broadcasting over points
    scalar = lambda name: head[name][:, None, 0]  # noqa: E731  [B,1]
    skull = col("skull")
    rx, ry, rz = skull[..., 0], skull[..., 1], skull[..., 2]
    p = x - torch.tensor([0.0, 0.05, 0.0])

    # Skin: skull, ears, nose and neck, smoothly blended.
    skin = _ellipsoid(p, skull)
    mirrored = torch.stack([p[..., 0].abs(), p[..., 1], p[..., 2]], -1)
    ear_centre = torch.stack([rx - 0.01, torch.full_like(rx, -0.02), torch.full_like(rx, -0.03)], -1)
    skin = _smin(skin, _ellipsoid(mirrored - ear_centre, col("ear")), 0.02)
    nose = col("nose")
    nose_centre = torch.stack([torch.zeros_like(rz), torch.full_like(rz, -0.06), rz - 0.35 * nose[..., 2]], -1)
    skin = _smin(skin, _ellipsoid(p - nose_centre, nose), 0.03)
    skin = _smin(skin, _capsule_y(p, -0.6, -0.2, 0.11 + 0.3 * (rx - 0.26)), 0.06)

    # Eyes: spheres sitting in the face; the iris is where the eye looks forward.
    eye_r = scalar("eye_radius")
    face_z = rz * 0.82
    eye_centre = torch.stack([scalar("eye_spacing"), torch.full_like(rz, 0.04), face_z], -1)
    eye_local = mirrored - eye_centre
    eyes = eye_local.norm(dim=-1) - eye_r
    # Lips: a flattened ellipsoid under the nose.
    lips_radii = torch.stack([scalar("mouth_width"), torch.full_like(rz, 0.022), torch.full_like(rz, 0.04)], -1)
    lips = _ellipsoid(p - torch.stack([torch.zeros_like(rz), torch.full_like(rz, -0.17), rz * 0.78], -1),
                      lips_radii)
    # Hair: a cap over the skull above a hairline that rises towards the front, plus per-style volumes.
    cap = _ellipsoid(p - torch.tensor([0.0, 0.02, -0.015]), skull + 0.03)
    hairline = p[..., 1] * math.cos(0.5) - p[..., 2] * math.sin(0.5)
    hair = torch.maximum(cap, scalar("hairline") - hairline)
    style = head["hair_style"][:, None]
    long_back = _ellipsoid(p - torch.stack([torch.zeros_like(rz), torch.full_like(rz, -0.12), -0.45 * rz], -1),
                           torch.stack([rx + 0.02, torch.full_like(rx, 0.3), 0.6 * rz], -1))
    bun = (p - torch.stack([torch.zeros_like(rz), ry + 0.02, -0.5 * rz], -1)).norm(dim=-1) - 0.11
    quiff = _ellipsoid(p - torch.stack([torch.zeros_like(rz), ry - 0.02, 0.45 * rz], -1),
                       torch.stack([0.6 * rx, torch.full_like(rx, 0.1), 0.5 * rz], -1))
    hair = torch.where(style == 2, _smin(hair, long_back, 0.04), hair)
    hair = torch.where(style == 3, _smin(hair, bun, 0.03), hair)
    hair = torch.where(style == 4, _smin(hair, quiff, 0.04), hair)
    hair = torch.where(style == 0, torch.full_like(hair, 10.0), hair)

    parts = torch.stack([skin, eyes, lips, hair], -1)
    dist, which = parts.min(dim=-1)

    # Colours: blush on the cheeks, irises on the eyes.
    cheek = torch.stack([torch.full_like(rx, 0.13), torch.full_like(rx, -0.07), face_z], -1)
    blush = torch.exp(-(mirrored - cheek).square().sum(-1) / 0.003)[..., None]
    skin_colour = torch.lerp(col("skin"), torch.tensor([0.85, 0.35, 0.35]), 0.35 * blush)
    forward = (eye_local[..., 2] / eye_r).clamp(-1, 1)
    iris = (forward > 0.6).to(x.dtype)[..., None]
    pupil = (forward > 0.88).to(x.dtype)[..., None]
    eye_colour = torch.lerp(torch.lerp(torch.full_like(skin_colour, 0.96), col("iris"), iris),
                            torch.full_like(skin_colour, 0.03), pupil)
    colours = torch.stack([skin_colour, eye_colour, col("lips").expand_as(skin_colour),
                           col("hair").expand_as(skin_colour)], -2)
    colour = colours.gather(-2, which[..., None, None].expand(*which.shape, 1, 3)).squeeze(-2)
    return dist, colour
