"""Coarse-to-fine evaluation of the density grid: exact only where marching cubes makes triangles.

Marching cubes only looks at cells whose corners straddle the level. A coarse grid (every `step`-th
point) finds those cells; only fine points inside them are evaluated, the rest are filled with a coarse
corner value (which keeps them on the coarse corners' side of the level). A closure pass then refines any
coarse cell whose exact face values reveal a crossing, so the fine cells that produce triangles all have
exact corners and the surface equals the dense grid's.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core.density_grid import GridDensity, crop, inside
from core.progress import Progress, report


def _cut_cells(cells: int, step: int, n: int, crop_border: bool) -> np.ndarray:
    """Coarse cells [C,C,C] holding both kept and cut fine points (the crop makes a surface there)."""
    kept = inside(np.arange(cells * step + 1), n, crop_border)
    spans = np.lib.stride_tricks.sliding_window_view(kept, step + 1)[::step]  # [C, step+1]
    some_in, some_out = spans.any(axis=1), ~spans.all(axis=1)
    has_in = some_in[:, None, None] & some_in[None, :, None] & some_in[None, None, :]
    has_out = some_out[:, None, None] | some_out[None, :, None] | some_out[None, None, :]
    return has_in & has_out


def _corner_flags(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of point grids [...,A,B,C]: (any corner >= level, all corners >= level), [...,A-1,B-1,C-1]."""
    above = values >= level
    a, b, c = (s - 1 for s in above.shape[-3:])
    any_above = np.zeros(above.shape[:-3] + (a, b, c), dtype=bool)
    all_above = np.ones_like(any_above)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = above[..., dx:dx + a, dy:dy + b, dz:dz + c]
                any_above |= corner
                all_above &= corner
    return any_above, all_above


def _straddles(values: np.ndarray, level: float) -> np.ndarray:
    """Cells whose corners lie on both sides of `level` (the only ones marching cubes triangulates)."""
    any_above, all_above = _corner_flags(values, level)
    return any_above & ~all_above


def coarse_to_fine_density(field: GridDensity, level: float, step: int = 4, chunk: int = 1 << 15,
                           crop_border: bool = True, dilate: int = 0,
                           progress: Progress | None = None) -> np.ndarray:
    """Density [N,N,N] (a view into a padded array) that is exact wherever marching cubes at `level`
    produces triangles.

    Coarse points every `step` fine points (padded past N-1 so the coarse cells tile the grid); the
    coarse cells whose corners straddle the level (grown by `dilate` cells) are evaluated at full
    resolution; any other cell that the refined neighbours' exact face values show to be crossed is
    refined too, until none is left. Surfaces that cross no coarse cell edge and touch no refined cell
    (blobs smaller than a coarse cell) can be missed; `dilate` lowers that risk.

    Fine points are evaluated in half-open bricks [a*step, (a+1)*step)^3 (each point once); a cell's
    far faces come from the bricks after it, so refining cell a needs bricks a .. a+1 on every axis.
    """
    n = field.n
    cn = math.ceil((n - 1) / step) + 1  # coarse points per axis = bricks per axis
    if cn * step > field.m:
        raise ValueError("GridDensity was built without room for the padded coarse grid")
    dev = field.device
    coarse = np.empty((cn, cn, cn), dtype=np.float32)
    origins = torch.zeros(cn, 3, dtype=torch.long, device=dev)
    origins[:, 0] = torch.arange(cn) * step
    done = field.evaluate_blocks(origins, (1, cn, cn), coarse, chunk, stride=step)  # fast: no progress
    # Fill: every fine point of brick a takes coarse point a, one of the corners of each cell that holds
    # it, so a cell whose corners agree stays on their side of the level until it is refined.
    vol = np.empty((cn * step,) * 3, dtype=np.float32)
    vol.reshape(cn, step, cn, step, cn, step)[...] = coarse[:, None, :, None, :, None]
    crop(vol, n, crop_border)
    any_above, all_above = _corner_flags(coarse, level)
    cells = (any_above & ~all_above) | (any_above & _cut_cells(cn - 1, step, n, crop_border))
    cells = _grow(cells, dilate)
    refined = np.zeros_like(cells)
    evaluated = np.zeros((cn,) * 3, dtype=bool)
    keep = inside(np.arange(cn * step), n, crop_border)
    total = done + int(_bricks_of(cells).sum()) * step ** 3  # progress in points; closure adds a few
    report(progress, done, total, "coarse grid")
    while cells.any():
        bricks = _bricks_of(cells) & ~evaluated
        origins = torch.from_numpy(np.argwhere(bricks) * step).to(dev)
        done = field.evaluate_blocks(origins, (step,) * 3, vol, chunk, progress, done, total, "refining",
                                     keep=keep)
        evaluated |= bricks
        refined |= cells
        # Closure: a neighbour whose now-exact shared face crosses the level must be refined as well.
        candidates = np.argwhere(_grow(cells, 1) & ~refined)
        ii, jj, kk = (candidates[:, d, None] * step + np.arange(step + 1) for d in range(3))
        sub = vol[ii[:, :, None, None], jj[:, None, :, None], kk[:, None, None, :]]
        crossed = _straddles(sub, level).reshape(len(candidates), -1).any(axis=1)
        cells = np.zeros_like(cells)
        cells[tuple(candidates[crossed].T)] = True
    report(progress, total, total, "density done")
    return vol[:n, :n, :n]  # a view: marching cubes and np.save take it as is, a copy would cost 0.2 s


def _bricks_of(cells: np.ndarray) -> np.ndarray:
    """Cells [C,C,C] -> the half-open bricks [C+1]^3 holding their closed point blocks (a .. a+1)."""
    c = cells.shape[0]
    out = np.zeros((c + 1,) * 3, dtype=bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                out[dx:dx + c, dy:dy + c, dz:dz + c] |= cells
    return out


def _grow(cells: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a boolean cell mask [C,C,C] by `radius` cells (26-neighbourhood)."""
    if radius <= 0:
        return cells
    k = 2 * radius + 1
    return F.max_pool3d(torch.from_numpy(cells)[None, None].float(), k, 1, radius)[0, 0].numpy() > 0

