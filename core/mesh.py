"""Iso-surface meshes of a generator's density: coarse-to-fine grid, PyMCubes, vertex colours, trimesh export.

The density is the decoder's raw sigma (EG3D ref §1.5, §7.3) on a regular N³ grid over the generator's
box [-box_warp/2, box_warp/2]³ (no shear, unlike the original script). Two facts make it fast on a CPU:

* On a regular grid every plane reads only N² distinct points (plane xy ignores z, ...), and the decoder's
  first layer is linear, so `FC1(mean of 3 plane features)` = a sum of per-plane tables [N,N,64]
  computed once (planes xz and zx share one). A grid point then costs two table rows, an add, a
  softplus and a dot product.
* Marching cubes only looks at cells whose corners straddle the level. A coarse grid (every `step`-th
  point) finds those cells; only fine points inside them are evaluated, the rest are filled with a
  coarse corner value (which keeps them on the coarse corners' side of the level). A closure pass then
  refines any coarse cell whose exact face values reveal a crossing, so the fine cells that produce
  triangles all have exact corners and the surface equals the dense grid's.

Vertices are in world coordinates (+y up, the subject faces +z), faces wind outward.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from core.fileio import atomic_path
from core.progress import Progress
from core.renderer import PLANE_AXES, planes_table

MeshFormat = Literal["ply", "obj", "glb"]
ColorMode = Literal["decoder", "views", "none"]
FORMATS: tuple[str, ...] = ("ply", "obj", "glb")
CROP_FRACTION = 30 / 256
"""Border cut on every face of the grid, as a fraction of its points (the original's 30 voxels at 256)."""


@dataclass(frozen=True)
class MeshOptions:
    resolution: int = 256
    """Grid points per axis (N); the voxel size is box_warp / (N - 1)."""
    level: float = 10.0
    """Iso-level on the raw sigma (the original's shape tools use 10; 2-20 are reasonable)."""
    crop_border: bool = True
    """Set a border of round(N * 30/256) points on every face below the level (cuts box-edge artefacts)."""
    color: ColorMode = "decoder"
    """'decoder': rgb features 0-2 at the vertices; 'views': projected super-resolved renderings; 'none'."""
    step: int = 4
    """Coarse grid spacing in fine points (1 = dense evaluation)."""
    dilate: int = 1
    """Coarse cells grown around the straddling ones before refinement (safety against small blobs)."""
    chunk: int = 1 << 15
    """Grid points evaluated per batch (bounds memory: about chunk * 1 KB)."""
    num_views: int = 7
    """Cameras used by color='views'."""
    fov_deg: float | None = None
    """FOV of the colouring views and the conditioning camera (None: the checkpoint's default)."""


@dataclass
class Mesh:
    vertices: np.ndarray
    """[V,3] float32 world coordinates."""
    faces: np.ndarray
    """[F,3] int64 vertex indices, counter-clockwise seen from outside."""
    colors: np.ndarray | None = None
    """[V,3] uint8 RGB or None."""


# ---------------------------------------------------------------------------------------------------
# Density on the regular grid

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
            if progress is not None:
                progress.update(min(done, total), total, message)
        return done


def _inside(idx: np.ndarray, n: int, crop_border: bool) -> np.ndarray:
    """Fine grid indices -> kept (True) or cut (the border band, and padding beyond N-1)."""
    border = int(round(n * CROP_FRACTION)) if crop_border else 0
    return (idx >= border) & (idx <= n - 1 - border)


def _crop(volume: np.ndarray, n: int, crop_border: bool) -> None:
    """In place: points that `_inside` cuts go to -1000 (below any sensible level)."""
    out = ~_inside(np.arange(volume.shape[0]), n, crop_border)
    volume[out] = -1000.0
    volume[:, out] = -1000.0
    volume[:, :, out] = -1000.0


def _cut_cells(cells: int, step: int, n: int, crop_border: bool) -> np.ndarray:
    """Coarse cells [C,C,C] holding both kept and cut fine points (the crop makes a surface there)."""
    inside = _inside(np.arange(cells * step + 1), n, crop_border)
    spans = np.lib.stride_tricks.sliding_window_view(inside, step + 1)[::step]  # [C, step+1]
    some_in, some_out = spans.any(axis=1), ~spans.all(axis=1)
    has_in = some_in[:, None, None] & some_in[None, :, None] & some_in[None, None, :]
    has_out = some_out[:, None, None] | some_out[None, :, None] | some_out[None, None, :]
    return has_in & has_out


def dense_density(field: GridDensity, chunk: int = 1 << 15, crop_border: bool = False,
                  progress: Progress | None = None) -> np.ndarray:
    """Every grid point evaluated -> [N,N,N] float32 indexed [x, y, z] (reference and volume export)."""
    n = field.n
    vol = np.empty((n, n, n), dtype=np.float32)
    origins = torch.zeros(n, 3, dtype=torch.long, device=field.device)
    origins[:, 0] = torch.arange(n)
    field.evaluate_blocks(origins, (1, n, n), vol, chunk, progress, 0, n ** 3, "density",
                          keep=_inside(np.arange(n), n, crop_border))
    return vol


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
    _crop(vol, n, crop_border)
    any_above, all_above = _corner_flags(coarse, level)
    cells = (any_above & ~all_above) | (any_above & _cut_cells(cn - 1, step, n, crop_border))
    cells = _grow(cells, dilate)
    refined = np.zeros_like(cells)
    evaluated = np.zeros((cn,) * 3, dtype=bool)
    keep = _inside(np.arange(cn * step), n, crop_border)
    total = done + int(_bricks_of(cells).sum()) * step ** 3  # progress in points; closure adds a few
    if progress is not None:
        progress.update(done, total, "coarse grid")
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
    if progress is not None:
        progress.update(total, total, "density done")
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


# ---------------------------------------------------------------------------------------------------
# Surface and colour

def marching_cubes(volume: np.ndarray, level: float, box_warp: float) -> Mesh:
    """PyMCubes on volume [x,y,z] -> Mesh in world coordinates (faces wind outward; no colours).

    Runs only on the bounding box of the points at or above the level (plus one point), where every
    crossing cell lies; with the border crop that is under half of the grid.
    """
    import mcubes
    n = volume.shape[0]
    above = volume >= level
    lo, hi = [], []
    for axis in range(3):
        hits = np.flatnonzero(above.any(axis=tuple(a for a in range(3) if a != axis)))
        if len(hits) == 0:
            return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))
        lo.append(max(int(hits[0]) - 1, 0))
        hi.append(min(int(hits[-1]) + 2, volume.shape[axis]))
    verts, faces = mcubes.marching_cubes(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], level)
    verts = ((verts + np.array(lo)) * (box_warp / (n - 1)) - box_warp / 2).astype(np.float32)
    return Mesh(verts, faces.astype(np.int64))  # PyMCubes winds outward when density grows inwards


def decoder_colors(G, planes: torch.Tensor, vertices: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Decoder rgb features 0-2 (in [0,1]) at the vertices -> [V,3] uint8."""
    out = []
    with torch.no_grad():
        table = planes_table(planes)
        for s in range(0, len(vertices), chunk):
            pts = torch.from_numpy(vertices[s:s + chunk]).to(planes.device)[None]
            out.append(G.sample_planes(planes, pts, table)["rgb"][0, :, :3].float().cpu())
    rgb = torch.cat(out) if out else torch.zeros(0, 3)
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


VIEW_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (-0.5, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, -0.35), (0.0, 0.35),
                (1.5, 0.0), (-1.5, 0.0))
"""(yaw, pitch) offsets from frontal, radians, of the cameras used by `view_colors` (in this order)."""


def _project(vertices: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World vertices [V,3], camera label [1,25] -> (uv [V,2] normalised image coords in [0,1] inside the
    frame, distance to the camera centre [V], unit direction to the camera [V,3]) (EG3D ref §1.8)."""
    cam2world, k = label[0, :16].view(4, 4), label[0, 16:].view(3, 3)
    rot, origin = cam2world[:3, :3], cam2world[:3, 3]
    local = (vertices - origin) @ rot  # R^T (X - o): camera +x right, +y down, +z forward
    z = local[:, 2].clamp_min(1e-6)
    u = k[0, 0] * local[:, 0] / z + k[0, 1] * local[:, 1] / z + k[0, 2]
    v = k[1, 1] * local[:, 1] / z + k[1, 2]
    to_cam = origin - vertices
    dist = to_cam.norm(dim=1)
    return torch.stack([u, v], dim=1), dist, to_cam / dist[:, None].clamp_min(1e-8)


def _sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """image [1,C,H,W], uv [V,2] in [0,1] (pixel centres at (j+0.5)/W) -> [V,C] bilinear, border clamp."""
    grid = (uv * 2 - 1).view(1, 1, -1, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def _visible(uv: torch.Tensor, dist: torch.Tensor, edge: float, focal: float) -> torch.Tensor:
    """Which projected vertices are not hidden by the mesh itself -> bool [V].

    A z-buffer of the vertices' camera distances at a resolution where one mesh edge is about one
    pixel (so the front surface covers its pixels); a vertex is visible when it is within three edge
    lengths of the nearest vertex in its pixel. (The renderer's own depth is an expected ray
    termination that semi-transparent density can pull well in front of the iso-surface.)
    """
    res = int(min(max(float(dist.median()) / (edge * focal), 16), 2048))
    inside = ((uv >= 0) & (uv < 1)).all(dim=1)
    pix = (uv.clamp(0, 1 - 1e-6) * res).long()
    flat = pix[:, 1] * res + pix[:, 0]
    zbuf = torch.full((res * res,), float("inf"), device=dist.device)
    zbuf.scatter_reduce_(0, flat[inside], dist[inside], reduce="amin")
    return inside & (dist <= zbuf[flat] + 3 * edge)


def view_colors(G, planes: torch.Tensor, ws: torch.Tensor, mesh: Mesh, num_views: int = 7,
                fov_deg: float | None = None, progress: Progress | None = None) -> np.ndarray:
    """Vertex colours from super-resolved renderings of `num_views` cameras -> [V,3] uint8.

    Each view renders the image (SR); a vertex takes a view's colour where it is in frame, faces the
    camera and is not hidden by the mesh (`_visible`). Views are averaged with weight
    cos(angle to the camera)²; vertices no view sees keep the decoder's colour.
    """
    from core.cameras import OrbitCamera
    import trimesh
    if not 1 <= num_views <= len(VIEW_OFFSETS):
        raise ValueError(f"number of views must be 1..{len(VIEW_OFFSETS)}, got {num_views}")
    dev = planes.device
    verts = torch.from_numpy(mesh.vertices).to(dev)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    normals = torch.from_numpy(np.asarray(tm.vertex_normals, dtype=np.float32)).to(dev)
    edge = float(np.median(tm.edges_unique_length))
    acc = torch.zeros(len(verts), 3, device=dev)
    weight = torch.zeros(len(verts), device=dev)
    opts = G.options
    for i, (yaw, pitch) in enumerate(VIEW_OFFSETS[:num_views]):
        if progress is not None:
            progress.update(i, num_views, f"colour view {i + 1}/{num_views}")
        label = OrbitCamera(yaw=yaw, pitch=pitch, radius=opts.avg_camera_radius,
                            pivot=tuple(opts.avg_camera_pivot),
                            fov_deg=fov_deg or opts.avg_camera_fov).label(dev)
        with torch.no_grad():
            out = G.render_planes(planes, ws, label)
        uv, dist, to_cam = _project(verts, label)
        image = out.get("image", out["image_raw"]).float()
        rgb = (_sample_image(image, uv).clamp(-1, 1) + 1) / 2
        facing = (normals * to_cam).sum(dim=1)
        seen = _visible(uv, dist, edge, float(label[0, 16]))
        w = facing.clamp_min(0) ** 2 * (seen & (facing > 0.1))
        acc += rgb * w[:, None]
        weight += w
    if progress is not None:
        progress.update(num_views, num_views, "colours done")
    colors = decoder_colors(G, planes, mesh.vertices)
    seen = (weight > 0).cpu().numpy()
    blended = (acc / weight.clamp_min(1e-8)[:, None]).cpu().numpy()
    colors[seen] = (np.clip(blended[seen], 0, 1) * 255 + 0.5).astype(np.uint8)
    return colors


def _check(options: MeshOptions) -> None:
    if options.resolution < 8:
        raise ValueError(f"mesh resolution must be at least 8, got {options.resolution}")
    if options.step < 1:
        raise ValueError(f"coarse step must be >= 1, got {options.step}")
    if options.color not in ("decoder", "views", "none"):
        raise ValueError(f"unknown colour mode {options.color!r} (decoder, views or none)")


def density_volume(G, planes: torch.Tensor, options: MeshOptions = MeshOptions(), dense: bool = False,
                   progress: Progress | None = None) -> np.ndarray:
    """Raw sigma [N,N,N] (indexed [x,y,z]) of planes [1,3,32,H,W], border-cropped per the options.

    dense=False evaluates coarse-to-fine (exact only near the iso-level, enough for the mesh);
    dense=True evaluates every point (for saving the volume, e.g. to pick other levels in ChimeraX).
    """
    _check(options)
    n, step = options.resolution, options.step
    padded = (math.ceil((n - 1) / step) + 1) * step  # the coarse-to-fine bricks reach this far
    with torch.no_grad():
        field = GridDensity(G.decoder, planes, G.options.box_warp, n, padded)
        if dense or step == 1:
            return dense_density(field, options.chunk, options.crop_border, progress)
        return coarse_to_fine_density(field, options.level, step, options.chunk, options.crop_border,
                                      options.dilate, progress)


def extract_mesh(G, planes: torch.Tensor, ws: torch.Tensor | None = None,
                 options: MeshOptions = MeshOptions(), progress: Progress | None = None,
                 volume: np.ndarray | None = None) -> Mesh:
    """Planes [1,3,32,H,W] of one latent -> coloured iso-surface Mesh (may have no faces).

    ws is needed for color='views'; `volume` reuses a density from `density_volume`.
    """
    _check(options)
    if volume is None:
        volume = density_volume(G, planes, options, progress=progress)
    mesh = marching_cubes(volume, options.level, G.options.box_warp)
    if len(mesh.faces) == 0 or options.color == "none":
        return mesh
    if options.color == "decoder":
        mesh.colors = decoder_colors(G, planes, mesh.vertices)
    else:
        if ws is None:
            raise ValueError("color='views' needs the latent's ws")
        mesh.colors = view_colors(G, planes, ws, mesh, options.num_views, options.fov_deg, progress)
    return mesh


# ---------------------------------------------------------------------------------------------------
# Files

def write_mesh(mesh: Mesh, path: str | os.PathLike, fmt: MeshFormat | None = None) -> Path:
    """Write PLY / OBJ / GLB (vertex colours included when present) atomically; returns the path."""
    import trimesh
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown mesh format {fmt!r} (expected one of {', '.join(FORMATS)})")
    colors = None
    if mesh.colors is not None:
        colors = np.concatenate([mesh.colors, np.full((len(mesh.colors), 1), 255, np.uint8)], axis=1)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors, process=False)
    with atomic_path(path) as tmp:
        if fmt == "obj":
            data = trimesh.exchange.obj.export_obj(tm, include_color=colors is not None, include_normals=False)
            tmp.write_text(data)
        else:
            tm.export(tmp, file_type=fmt)
    return path


def write_volume(volume: np.ndarray, path: str | os.PathLike, box_warp: float = 1.0) -> Path:
    """Density [x,y,z] -> .npy (as is) or .mrc (float32, z-slowest as MRC expects, voxel size set)."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, volume.astype(np.float32, copy=False))
        elif suffix == ".mrc":
            try:
                import mrcfile
            except ImportError:
                raise ValueError("writing .mrc needs the mrcfile package (pip install mrcfile); "
                                 "use --volume npy") from None
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=np.float32))
                mrc.voxel_size = box_warp / (volume.shape[0] - 1)
        else:
            raise ValueError(f"unknown volume format {suffix!r} (expected .npy or .mrc)")
    return path
