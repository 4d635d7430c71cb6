"""Iso-surface meshes of a generator's density: grid density, coarse-to-fine refinement, marching cubes,
decimation, vertex colours and normals, UV atlas and baked texture, files.

The density is the decoder's raw sigma (EG3D ref §1.5, §7.3) on a regular N³ grid over the generator's
box [-box_warp/2, box_warp/2]³ (no shear, unlike the original script): `core.density_grid` computes it,
`core.coarse_to_fine` evaluates it only where the surface is, `core.decimation` reduces the faces,
`core.vertex_attributes` colours the vertices and gives them normals, `core.uv_atlas` unwraps the surface
and `core.texture_bake` bakes its texture, `core.mesh_files` writes PLY/OBJ/GLB and volumes. This module
only runs those phases in order; `core.triangle_mesh.Mesh`, the value they pass on, sits below them all.

Vertices are in world coordinates (+y up, the subject faces +z), faces wind outward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.coarse_to_fine import coarse_to_fine_density
from core.decimation import MIN_FACES, decimate
from core.density_grid import CROP_FRACTION, GridDensity, dense_density
from core.mesh_files import FORMATS, TEXTURED_FORMATS, MeshFormat, write_mesh, write_volume
from core.progress import Progress, report
from core.texture_bake import TEXTURE_SOURCES, TextureSource, bake_texture
from core.triangle_mesh import Mesh, drop_degenerate_faces
from core.uv_atlas import check_texture_size, uv_atlas
from core.vertex_attributes import decoder_colors, density_normals, view_colors
from core.view_projection import VIEW_OFFSETS

__all__ = ["CROP_FRACTION", "FORMATS", "TEXTURED_FORMATS", "TEXTURE_SOURCES", "VIEW_OFFSETS", "ColorMode",
           "GridDensity", "Mesh", "MeshFormat", "MeshOptions", "clean_volume", "coarse_to_fine_density",
           "decoder_colors", "dense_density", "density_normals", "drop_degenerate_faces", "density_volume",
           "extract_mesh", "marching_cubes", "view_colors", "write_mesh", "write_volume"]

ColorMode = Literal["decoder", "views", "none"]


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
    clean: bool = True
    """Fill closed cavities (bubbles no view can see) and drop dust (see `clean_volume`) before meshing,
    and zero-area faces after."""
    faces: int | None = None
    """Decimate to about this many faces (quadric edge collapse, `core.decimation`); None keeps them all."""
    texture: int | None = None
    """Side of a square base-colour texture on a UV atlas (then no vertex colours); None: no texture."""
    texture_from: TextureSource = "decoder"
    """'decoder': the radiance colour under each texel; 'views': projected super-resolved renderings of
    `num_views` cameras (as color='views', per texel)."""


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


def clean_volume(volume: np.ndarray, level: float, min_part: float = 1e-3) -> np.ndarray:
    """A copy of volume [x,y,z] whose iso-surface at `level` is one clean object per part.

    Closed cavities (regions below the level that no ray from outside reaches) are raised above it, so
    no mesh surface is left inside the object; connected parts (26-neighbourhood) with fewer than
    min_part times the voxels of the largest part are lowered below it (single-voxel floaters and specks).
    Parts of a real size, e.g. a chair leg that does not touch the seat, stay.
    """
    from scipy import ndimage
    inside = volume >= level
    out = volume.copy()
    cavities = ndimage.binary_fill_holes(inside) & ~inside
    labels, count = ndimage.label(inside, structure=np.ones((3, 3, 3), bool))
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        dust = sizes < min_part * sizes.max()
        dust[0] = False
        out[dust[labels]] = np.float32(level - 1)
    out[cavities] = np.float32(level + 1)
    return out


def _check(options: MeshOptions) -> None:
    if options.resolution < 8:
        raise ValueError(f"mesh resolution must be at least 8, got {options.resolution}")
    if options.step < 1:
        raise ValueError(f"coarse step must be >= 1, got {options.step}")
    if options.color not in ("decoder", "views", "none"):
        raise ValueError(f"unknown colour mode {options.color!r} (decoder, views or none)")
    if options.faces is not None and options.faces < MIN_FACES:
        raise ValueError(f"face count must be at least {MIN_FACES}, got {options.faces}")
    if options.texture is not None:
        check_texture_size(options.texture)
    if options.texture_from not in TEXTURE_SOURCES:
        raise ValueError(f"unknown texture source {options.texture_from!r} (decoder or views)")


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
    """Planes [1,3,32,H,W] of one latent -> iso-surface Mesh with normals and colours, or with a UV atlas
    and a baked texture when options.texture is set (may have no faces).

    Phases, each reporting to `progress` (and stopping there when it is cancelled): density grid,
    marching cubes, decimation, normals and colours, unwrap, bake. ws is needed for the 'views' sources;
    `volume` reuses a density from `density_volume`.
    """
    _check(options)
    if volume is None:
        volume = density_volume(G, planes, options, progress=progress)
    report(progress, 0, 1, "marching cubes")
    if options.clean:
        volume = clean_volume(volume, options.level)
    mesh = marching_cubes(volume, options.level, G.options.box_warp)
    if options.clean:
        mesh = drop_degenerate_faces(mesh)
    if len(mesh.faces) == 0:
        return mesh
    if options.faces is not None:
        report(progress, 0, 1, f"decimation to {options.faces} faces")
        mesh = decimate(mesh, options.faces)
    report(progress, 0, 1, "normals")
    mesh.normals = density_normals(G, planes, mesh, G.options.box_warp / (options.resolution - 1))
    if options.texture is not None:
        mesh = uv_atlas(mesh, options.texture, progress)
        mesh.texture = bake_texture(G, planes, mesh, options.texture, options.texture_from, ws,
                                    options.num_views, options.fov_deg, progress)
        return mesh
    if options.color == "none":
        return mesh
    if options.color == "decoder":
        mesh.colors = decoder_colors(G, planes, mesh.vertices)
    else:
        if ws is None:
            raise ValueError("color='views' needs the latent's ws")
        mesh.colors = view_colors(G, planes, ws, mesh, options.num_views, options.fov_deg, progress)
    return mesh
