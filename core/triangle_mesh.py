"""The triangle mesh that every mesh stage passes on: geometry plus optional per-vertex attributes, a UV
atlas and its base-colour texture.

The bottom of the mesh modules: extraction, decimation, unwrapping, baking and the file writers all
import `Mesh` from here, and this module imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    vertices: np.ndarray
    """[V,3] float32 world coordinates (+y up, the subject faces +z)."""
    faces: np.ndarray
    """[F,3] int64 vertex indices, counter-clockwise seen from outside."""
    colors: np.ndarray | None = None
    """[V,3] uint8 sRGB or None."""
    normals: np.ndarray | None = None
    """[V,3] float32 unit outward normals (from the density gradient) or None."""
    uvs: np.ndarray | None = None
    """[V,2] float32 texture coordinates in glTF's convention: u to the right, v down from the image's
    first row; texel (row i, column j) of an S x S texture has its centre at ((j + 0.5) / S, (i + 0.5) / S)."""
    texture: np.ndarray | None = None
    """[S,S,3] uint8 sRGB base colour addressed by `uvs`, or None."""


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals [F,3] float64 (length = twice the face's area; outward for CCW faces)."""
    v = vertices.astype(np.float64)
    return np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])


def area_weighted_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals [V,3] float64: the area-weighted mean of the faces around each vertex."""
    acc = np.zeros((len(vertices), 3))
    fn = face_normals(vertices, faces)
    for k in range(3):
        np.add.at(acc, faces[:, k], fn)
    return acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)


def median_edge_length(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Median length of the faces' edges (each interior edge counted twice, which leaves the median)."""
    v = vertices[faces]
    return float(np.median(np.linalg.norm(v - np.roll(v, 1, axis=1), axis=2)))


def drop_degenerate_faces(mesh: Mesh) -> Mesh:
    """Mesh without zero-area faces (marching cubes makes them where the density meets the level at a
    grid point; alone they show up as one-face specks) and without the vertices no face uses any more."""
    corners = mesh.vertices[mesh.faces]
    keep = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1) > 0
    if keep.all():
        return mesh
    used = np.unique(mesh.faces[keep])
    remap = np.zeros(len(mesh.vertices), np.int64)
    remap[used] = np.arange(len(used))
    return Mesh(mesh.vertices[used], remap[mesh.faces[keep]])
