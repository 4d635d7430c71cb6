"""Raw density on a regular N³ grid over the generator's box, from per-plane tables (EG3D ref §1.5, §7.3).

On a regular grid every plane reads only N² distinct points (plane xy ignores z, ...), and the decoder's
first layer is linear, so `FC1(mean of 3 plane features)` is a sum of per-plane tables [N,N,64] computed
once (planes xz and zx share one). A grid point then costs two table rows, an add, a softplus and a dot
product. The border crop (the original's 30 voxels at 256) is applied here too.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.progress import Progress, report
from core.renderer import PLANE_AXES

CROP_FRACTION = 30 / 256
"""Border cut on every face of the grid, as a fraction of its points (the original's 30 voxels at 256)."""


class GridDensity:
    """Raw sigma at integer grid points (i, j, k) -> world (x, y, z) = -box/2 + (i, j, k) * box/(N-1).

    Built once per planes. On a regular grid each plane reads only M² distinct points, and the decoder's
    first layer is linear, so each plane's share of it becomes a table [M,M,64]; planes that read the
    same pair of axes share one table (EG3D's planes xz and zx both read (x, z): ref §0 quirk 1), so a
    grid point costs two table rows, one add, a softplus and a dot product. M >= N leaves room for the
    padded coarse grid (points past the box read zero features, as in the renderer).
    planes [1,3,C,H,W]; the decoder is read through its two linear layers (probed, so any
    FullyConnectedLayer parametrisation works).
    """

    def __init__(self, decoder: torch.nn.Module, planes: torch.Tensor, box_warp: float, resolution: int,
                 padded: int | None = None):
        if planes.shape[0] != 1:
            raise ValueError("GridDensity takes the planes of one latent ([1,3,C,H,W])")
        self.n, self.m = resolution, max(resolution, padded or resolution)
        self.box_warp = box_warp
        dev, dtype = planes.device, planes.dtype
        fc1, fc2 = decoder.net[0], decoder.net[2]
        c = planes.shape[2]
        with torch.no_grad():
            b1 = fc1(torch.zeros(1, c, device=dev, dtype=dtype))[0]
            w1 = fc1(torch.eye(c, device=dev, dtype=dtype)) - b1  # [C,64]
            out0 = fc2(torch.zeros(1, w1.shape[1], device=dev, dtype=dtype))[0]
            self.w2 = (fc2(torch.eye(w1.shape[1], device=dev, dtype=dtype)) - out0)[:, 0].contiguous()  # [64]
            self.b2 = out0[0]
            u = self.coords(torch.arange(self.m, device=dev)) * (2 / box_warp)
            gu, gv = torch.meshgrid(u, u, indexing="ij")
            grid = torch.stack([gu, gv], dim=-1)[None]  # [1,M,M,2]: [...,0] = width (u), [...,1] = height (v)
            tables: dict[tuple[int, int], torch.Tensor] = {}
            for k, (a, b) in enumerate(PLANE_AXES):
                f = F.grid_sample(planes[:, k], grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)[0].permute(1, 2, 0)  # [M(axis a), M(axis b), C]
                t = f @ (w1 / 3)  # mean over the planes folded into the weights
                if a > b:
                    t = t.transpose(0, 1)
                key = (min(a, b), max(a, b))
                tables[key] = tables[key] + t if key in tables else t
            first = next(iter(tables))
            tables[first] = tables[first] + b1
            self.tables = {key: t.reshape(self.m * self.m, -1).contiguous() for key, t in tables.items()}

    def coords(self, idx: torch.Tensor) -> torch.Tensor:
        """Grid index -> world coordinate (indices >= N lie beyond the box, where planes read zero)."""
        return idx.to(torch.float32) * (self.box_warp / (self.n - 1)) - self.box_warp / 2

    @property
    def device(self) -> torch.device:
        return self.w2.device

    def blocks(self, origins: torch.Tensor, shape: tuple[int, int, int], stride: int = 1) -> torch.Tensor:
        """Raw sigma on K axis-aligned blocks of grid points: origins [K,3] (i,j,k of each block's first
        point), shape (bi,bj,bk), points `stride` apart -> [K,bi,bj,bk].

        Each table contributes a [K, b_a, b_b, 64] gather broadcast over the axis it ignores; then
        softplus and the sigma row of the decoder's last layer (ref §1.5). Every point sees the same
        operations in the same order, so its value does not depend on the block it was computed in.
        """
        axes = [origins[:, d, None] + torch.arange(shape[d], device=origins.device) * stride for d in range(3)]
        h = None
        for (a, b), table in self.tables.items():
            idx = axes[a][:, :, None] * self.m + axes[b][:, None, :]  # [K, b_a, b_b]
            rows = table.index_select(0, idx.reshape(-1)).reshape(*idx.shape, -1)
            rows = rows.unsqueeze(1 + (3 - a - b))  # [K, bi, bj, bk, 64] with the ignored axis of size 1
            h = rows if h is None else h + rows
        return F.softplus(h) @ self.w2 + self.b2

    def evaluate_blocks(self, origins: torch.Tensor, shape: tuple[int, int, int], volume: np.ndarray,
                        chunk: int, progress: Progress | None = None, done: int = 0, total: int = 0,
                        message: str = "density", stride: int = 1, keep: np.ndarray | None = None) -> int:
        """`blocks` in batches of about `chunk` points, written into `volume` at grid index / stride.

        keep: optional per-index mask [E] (fine indices); points outside it are written as -1000.
        Returns `done` plus the number of points evaluated (progress units across calls)."""
        per_block = shape[0] * shape[1] * shape[2]
        batch = max(1, chunk // per_block)
        for s in range(0, origins.shape[0], batch):
            o = origins[s:s + batch]
            values = self.blocks(o, shape, stride).cpu().numpy()
            o = o.cpu().numpy()
            ii, jj, kk = (o[:, d, None] + np.arange(shape[d]) * stride for d in range(3))
            if keep is not None:
                cut = ~(keep[ii][:, :, None, None] & keep[jj][:, None, :, None] & keep[kk][:, None, None, :])
                values[cut] = -1000.0
            ii, jj, kk = ii // stride, jj // stride, kk // stride
            volume[ii[:, :, None, None], jj[:, None, :, None], kk[:, None, None, :]] = values
            done += len(o) * per_block
            report(progress, min(done, total), total, message)
        return done


def inside(idx: np.ndarray, n: int, crop_border: bool) -> np.ndarray:
    """Fine grid indices -> kept (True) or cut (the border band, and padding beyond N-1)."""
    border = int(round(n * CROP_FRACTION)) if crop_border else 0
    return (idx >= border) & (idx <= n - 1 - border)


def crop(volume: np.ndarray, n: int, crop_border: bool) -> None:
    """In place: points that `inside` cuts go to -1000 (below any sensible level)."""
    out = ~inside(np.arange(volume.shape[0]), n, crop_border)
    volume[out] = -1000.0
    volume[:, out] = -1000.0
    volume[:, :, out] = -1000.0


def dense_density(field: GridDensity, chunk: int = 1 << 15, crop_border: bool = False,
                  progress: Progress | None = None) -> np.ndarray:
    """Every grid point evaluated -> [N,N,N] float32 indexed [x, y, z] (reference and volume export)."""
    n = field.n
    vol = np.empty((n, n, n), dtype=np.float32)
    origins = torch.zeros(n, 3, dtype=torch.long, device=field.device)
    origins[:, 0] = torch.arange(n)
    field.evaluate_blocks(origins, (1, n, n), vol, chunk, progress, 0, n ** 3, "density",
                          keep=inside(np.arange(n), n, crop_border))
    return vol

