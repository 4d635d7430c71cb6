"""Texture baking: the base colour of the surface point under every texel of a UV atlas.

The faces are rasterised in UV space (`core.rasterizer`): each covered texel centre has one face and
barycentric weights, hence a point on the surface and an interpolated normal. Sources:
- 'decoder': the radiance colour of the tri-plane decoder at that point (rgb features 0-2, what the
  vertex colours hold, at texture resolution);
- 'views': the super-resolved images of K views projected onto the points with a depth test and blended
  by viewing angle (`core.view_projection`); points no view sees take the decoder's colour.
Then every texel outside the charts takes the colour of the nearest baked texel (dilation), so the
gutters carry the charts' border colours and no seam shows through bilinear filtering or mip levels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from core.progress import Progress, report
from core.rasterizer import first_owner, rasterize
from core.triangle_mesh import Mesh, area_weighted_normals
from core.uv_atlas import check_texture_size
from core.vertex_attributes import decoder_rgb, to_uint8
from core.view_projection import blend_views

TextureSource = Literal["decoder", "views"]
TEXTURE_SOURCES: tuple[str, ...] = ("decoder", "views")


@dataclass
class Texels:
    """The covered texels of an S x S atlas, one row each."""
    index: torch.Tensor
    """[T] long flat texel index row * S + column."""
    points: torch.Tensor
    """[T,3] float32 surface points under the texel centres (world coordinates)."""
    normals: torch.Tensor
    """[T,3] float32 unit normals there (the vertex normals interpolated)."""


def covered_texels(mesh: Mesh, size: int, device: torch.device | str = "cpu") -> Texels:
    """Rasterise the faces in UV space at size x size: every texel whose centre a face covers."""
    uvs = torch.from_numpy(mesh.uvs).to(device)
    faces = torch.from_numpy(mesh.faces).to(device)
    frags = first_owner(rasterize(uvs[faces] * size, size, size), size * size)
    corners = frags.bary[:, :, None]  # [T,3,1] weights of the owning face's corners
    fv = faces[frags.face]  # [T,3]
    verts = torch.from_numpy(mesh.vertices).to(device)
    normals = mesh.normals if mesh.normals is not None else area_weighted_normals(mesh.vertices, mesh.faces)
    normals = torch.from_numpy(normals).float().to(device)
    n = (corners * normals[fv]).sum(dim=1)
    return Texels(frags.pixel, (corners * verts[fv]).sum(dim=1), n / n.norm(dim=1, keepdim=True).clamp_min(1e-8))


def dilate(texture: np.ndarray, baked: np.ndarray) -> np.ndarray:
    """texture [S,S,3] with baked [S,S] bool -> every unbaked texel set to its nearest baked texel."""
    from scipy import ndimage
    if baked.all() or not baked.any():
        return texture
    _, (rows, cols) = ndimage.distance_transform_edt(~baked, return_indices=True)
    return texture[rows, cols]


def bake_texture(G, planes: torch.Tensor, mesh: Mesh, size: int, source: TextureSource = "decoder",
                 ws: torch.Tensor | None = None, num_views: int = 7, fov_deg: float | None = None,
                 progress: Progress | None = None) -> np.ndarray:
    """A size x size uint8 sRGB base-colour texture for `mesh` (which has `uvs`) from planes [1,3,C,H,W].

    source 'views' needs the latent's ws. Works on the planes' device.
    """
    check_texture_size(size)
    if source not in TEXTURE_SOURCES:
        raise ValueError(f"unknown texture source {source!r} (decoder or views)")
    if mesh.uvs is None:
        raise ValueError("baking a texture needs a mesh with a UV atlas")
    if source == "views" and ws is None:
        raise ValueError("texture source 'views' needs the latent's ws")
    dev = planes.device
    texels = covered_texels(mesh, size, dev)
    if source == "views":
        rgb, weight = blend_views(G, planes, ws, mesh, texels.points, texels.normals, num_views, fov_deg, progress)
        unseen = weight == 0
        rgb[unseen] = decoder_rgb(G, planes, texels.points[unseen], progress=progress, message="bake: unseen")
    else:
        rgb = decoder_rgb(G, planes, texels.points, progress=progress, message="bake: decoder")
    texture = np.zeros((size * size, 3), np.uint8)
    baked = np.zeros(size * size, bool)
    index = texels.index.cpu().numpy()
    texture[index] = to_uint8(rgb)
    baked[index] = True
    report(progress, 1, 1, "bake: gutters")
    return dilate(texture.reshape(size, size, 3), baked.reshape(size, size))
