"""Decimation: a marching-cubes mesh reduced to about N faces by quadric edge collapse.

Uses fast-simplification (Garland-Heckbert quadric error metrics, the Fast-Quadric-Mesh-Simplification
library): edge collapses on a closed mesh keep it closed, so a watertight mesh stays watertight. Colours
and normals of the old vertices do not carry over; the caller samples them again at the new vertices.
"""
from __future__ import annotations

import numpy as np

from core.triangle_mesh import Mesh, drop_degenerate_faces

MIN_FACES = 4
"""A closed surface needs at least a tetrahedron's four faces."""


def check_face_count(target: int, available: int) -> None:
    """ValueError naming both numbers unless MIN_FACES <= target <= available."""
    if target < MIN_FACES:
        raise ValueError(f"face count {target}: a mesh needs at least {MIN_FACES} faces")
    if target > available:
        raise ValueError(f"face count {target} is more than the mesh's {available} faces: ask for at most "
                         f"{available}, or a finer grid (resolution) for more")


def decimate(mesh: Mesh, target_faces: int) -> Mesh:
    """Mesh with about `target_faces` faces (the geometry only; vertices float32, faces int64).

    Asking for the mesh's own face count returns it unchanged; more than it has is a ValueError.
    """
    check_face_count(target_faces, len(mesh.faces))
    if target_faces == len(mesh.faces):
        return Mesh(mesh.vertices, mesh.faces)
    import fast_simplification
    vertices, faces = fast_simplification.simplify(mesh.vertices, mesh.faces, target_count=target_faces)
    return drop_degenerate_faces(Mesh(vertices.astype(np.float32), faces.astype(np.int64)))
