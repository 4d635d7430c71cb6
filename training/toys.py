"""Procedural toys: recognisable objects built from the primitives of training.primitives.

Six categories (chair, table, car, lamp, tree, snowman), each in a canonical frame: standing on the
floor with +y up and its front towards +z, so pose and shape are not entangled; built in a box of
about [-0.45, 0.45]^3 and scaled by SCALE so that every view of the object fits the frame. Within a
category the proportions, part counts and colours vary; across categories the shapes differ a lot,
which is what a generator has to learn to cover. The result is a `scene` dict for
training.primitives.scene_sdf (one primitive per part, hard edges through a small blending radius).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from training.primitives import KINDS, euler_rotation

CATEGORIES = ("chair", "table", "car", "lamp", "tree", "snowman")
MAX_PARTS = 8
FLOOR = -0.4
SCALE = 0.9
_SPHERE, _BOX, _CYLINDER = (KINDS.index(k) for k in ("sphere", "box", "cylinder"))

Part = tuple[int, tuple[float, float, float], tuple[float, float, float], tuple[float, float, float],
             tuple[float, float, float]]
"""(kind, centre, size, euler angles, colour); sizes use scene_sdf's parameterisation."""


def _box(centre, half, colour, angles=(0.0, 0.0, 0.0)) -> Part:
    return (_BOX, centre, tuple(h / 0.8 for h in half), angles, colour)


def _cylinder(centre, radius, half_height, colour, angles=(0.0, 0.0, 0.0)) -> Part:
    return (_CYLINDER, centre, (radius / 0.8, half_height, 0.0), angles, colour)


def _sphere(centre, radius, colour) -> Part:
    return (_SPHERE, centre, (radius, 0.0, 0.0), (0.0, 0.0, 0.0), colour)


class _Draw:
    """Uniform draws and colours from one generator."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def u(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def coin(self, p: float = 0.5) -> bool:
        return float(torch.rand((), generator=self.gen)) < p

    def colour(self, sat: tuple[float, float] = (0.5, 0.9), val: tuple[float, float] = (0.6, 0.95)
               ) -> tuple[float, float, float]:
        h, s, v = self.u(0, 1), self.u(*sat), self.u(*val)
        k = [(n + h * 6) % 6 for n in (5.0, 3.0, 1.0)]
        return tuple(v - v * s * max(0.0, min(kk, 4 - kk, 1.0)) for kk in k)

    def wood(self) -> tuple[float, float, float]:
        t = self.u(0.35, 0.75)
        return (t, 0.62 * t, 0.35 * t)


def _chair(d: _Draw) -> list[Part]:
    w, depth, seat = d.u(0.17, 0.25), d.u(0.16, 0.22), d.u(-0.12, 0.0)
    leg, legs, cushion = d.u(0.018, 0.03), d.wood(), d.colour()
    back_h = d.u(0.18, 0.36)
    parts = [_box((0.0, seat, 0.0), (w, 0.03, depth), cushion),
             _box((0.0, seat + 0.03 + back_h / 2, -depth + 0.025), (w, back_h / 2, 0.025), cushion)]
    half = (seat - FLOOR) / 2
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(_box((sx * (w - leg), FLOOR + half, sz * (depth - leg)), (leg, half, leg), legs))
    return parts


def _table(d: _Draw) -> list[Part]:
    top_y, wood, top = d.u(-0.1, 0.08), d.wood(), d.colour((0.1, 0.5))
    half = (top_y - FLOOR) / 2
    if d.coin():
        w, depth, leg = d.u(0.28, 0.42), d.u(0.18, 0.32), d.u(0.02, 0.035)
        parts = [_box((0.0, top_y, 0.0), (w, 0.025, depth), top)]
        parts += [_box((sx * (w - leg - 0.02), FLOOR + half, sz * (depth - leg - 0.02)), (leg, half, leg), wood)
                  for sx in (-1, 1) for sz in (-1, 1)]
        return parts
    r = d.u(0.22, 0.36)
    return [_cylinder((0.0, top_y, 0.0), r, 0.025, top),
            _cylinder((0.0, FLOOR + half, 0.0), d.u(0.03, 0.05), half, wood),
            _cylinder((0.0, FLOOR + 0.015, 0.0), d.u(0.1, 0.16), 0.015, wood)]


def _car(d: _Draw) -> list[Part]:
    w, h, length = d.u(0.17, 0.22), d.u(0.06, 0.09), d.u(0.3, 0.42)
    wheel_r = d.u(0.065, 0.09)
    body_y = FLOOR + wheel_r + h * 0.4
    body, glass, tyre = d.colour((0.6, 0.95), (0.7, 0.95)), (0.55, 0.65, 0.75), (0.08, 0.08, 0.09)
    cab_len, cab_h = d.u(0.12, 0.22), d.u(0.05, 0.08)
    parts = [_box((0.0, body_y, 0.0), (w, h, length), body),
             _box((0.0, body_y + h + cab_h, -d.u(0.0, 0.1)), (w * 0.85, cab_h, cab_len), glass)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(_cylinder((sx * (w - 0.01), FLOOR + wheel_r, sz * (length - wheel_r - 0.03)), wheel_r,
                                   0.035, tyre, angles=(0.0, 0.0, math.pi / 2)))
    return parts


def _lamp(d: _Draw) -> list[Part]:
    top, metal, shade = d.u(-0.05, 0.15), d.colour((0.0, 0.2), (0.3, 0.6)), d.colour((0.3, 0.8), (0.8, 1.0))
    half = (top - FLOOR) / 2
    parts = [_cylinder((0.0, FLOOR + 0.015, 0.0), d.u(0.1, 0.16), 0.015, metal),
             _cylinder((0.0, FLOOR + half, 0.0), d.u(0.015, 0.025), half, metal)]
    if d.coin():
        parts.append(_cylinder((0.0, top, 0.0), d.u(0.12, 0.2), d.u(0.07, 0.12), shade))
    else:
        parts.append(_sphere((0.0, top + 0.05, 0.0), d.u(0.1, 0.16), shade))
    return parts


def _tree(d: _Draw) -> list[Part]:
    trunk_top, bark = d.u(-0.25, -0.05), d.wood()
    half = (trunk_top - FLOOR) / 2
    parts = [_cylinder((0.0, FLOOR + half, 0.0), d.u(0.035, 0.06), half, bark)]
    green = d.u(0.3, 0.6)
    y = trunk_top
    for i in range(int(d.u(1, 4))):
        r = d.u(0.14, 0.26) * (1 - 0.2 * i)
        y += r * (0.9 if i == 0 else 1.1)
        parts.append(_sphere((d.u(-0.03, 0.03), y, d.u(-0.03, 0.03)), r, (0.15, green + 0.1 * i, 0.15)))
        y = min(y, 0.3 - r)
    return parts


def _snowman(d: _Draw) -> list[Part]:
    snow, coal, carrot = (0.95, 0.96, 0.98), (0.05, 0.05, 0.06), (0.95, 0.45, 0.1)
    r1, r2 = d.u(0.13, 0.17), d.u(0.09, 0.12)
    r3 = d.u(0.065, 0.085)
    y1 = FLOOR + r1
    y2 = y1 + r1 + r2 * 0.7
    y3 = y2 + r2 + r3 * 0.7
    parts = [_sphere((0.0, y1, 0.0), r1, snow), _sphere((0.0, y2, 0.0), r2, snow), _sphere((0.0, y3, 0.0), r3, snow),
             _cylinder((0.0, y3, r3 + 0.03), 0.018, d.u(0.035, 0.06), carrot, angles=(math.pi / 2, 0.0, 0.0))]
    parts += [_sphere((sx * r3 * 0.4, y3 + r3 * 0.3, r3 * 0.88), 0.018, coal) for sx in (-1, 1)]
    if d.coin():
        hat = d.colour((0.5, 0.9), (0.2, 0.6))
        parts.append(_cylinder((0.0, y3 + r3 * 0.8 + 0.06, 0.0), r3 * 0.8, 0.06, hat))
    return parts


_BUILDERS: dict[str, Callable[[_Draw], list[Part]]] = {
    "chair": _chair, "table": _table, "car": _car, "lamp": _lamp, "tree": _tree, "snowman": _snowman}


def random_toys(gen: torch.Generator, count: int, categories: tuple[str, ...] = CATEGORIES
                ) -> dict[str, torch.Tensor]:
    """`count` toys of random categories as a training.synthetic scene dict ([count, MAX_PARTS] parts)."""
    d = _Draw(gen)
    kinds = torch.zeros(count, MAX_PARTS, dtype=torch.long)
    active = torch.zeros(count, MAX_PARTS, dtype=torch.bool)
    centre, size, angles, colour = (torch.zeros(count, MAX_PARTS, 3) for _ in range(4))
    for i in range(count):
        name = categories[int(torch.randint(0, len(categories), (), generator=gen))]
        for k, (kind, c, s, a, rgb) in enumerate(_BUILDERS[name](d)):
            kinds[i, k], active[i, k] = kind, True
            centre[i, k], size[i, k], angles[i, k], colour[i, k] = (torch.tensor(v) for v in (c, s, a, rgb))
    centre, size = centre * SCALE, size * SCALE
    return dict(kinds=kinds, active=active, present=torch.tensor([_SPHERE, _BOX, _CYLINDER]), centre=centre,
                size=size, rot=euler_rotation(angles), colour=colour)
