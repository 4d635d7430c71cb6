"""Decimation: a marching-cubes mesh reduced to N faces by quadric edge collapse.

Uses MeshLab's quadric edge collapse (Garland-Heckbert error quadrics, through pymeshlab) with topology
preservation: a collapse that would pinch the surface or change its genus is refused, so a watertight
mesh stays watertight and keeps its parts. (fast-simplification, 15x faster, was tried first: on a coarse
mesh cut to a quarter of its faces it tore the closed surface and split parts.) Colours and normals of
the old vertices do not carry over; the caller samples them again at the new vertices.

pymeshlab runs in a child process: its wheel bundles its own Qt and X11 client libraries, and a process
that also holds the studio's GLFW window aborted at exit (heap corruption) once they were loaded.
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
    """Mesh with `target_faces` faces, or more where topology forbids further collapses (14 % more on a
    coarse 128³ surface cut to 10k), the geometry only: vertices float32, faces int64, winding kept.

    Asking for the mesh's own face count returns it unchanged; more than it has is a ValueError.
    """
    check_face_count(target_faces, len(mesh.faces))
    if target_faces == len(mesh.faces):
        return Mesh(mesh.vertices, mesh.faces)
    import multiprocessing

    from core.fileio import deferred_signals
    with deferred_signals():  # an interrupt inside Pool() would leave a child that nothing stops
        child = multiprocessing.get_context("spawn").Pool(1)
    try:
        vertices, faces = child.apply(_edge_collapse, (mesh.vertices, mesh.faces, target_faces))
    finally:  # on SIGTERM or Ctrl-C too: the child is killed, not waited for (an executor's shutdown, cut by
        with deferred_signals():  # the interrupt, used to leave the parent waiting for it for good)
            child.terminate()
            child.join()
    return drop_degenerate_faces(Mesh(vertices, faces))


def _edge_collapse(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """pymeshlab's quadric edge collapse with topology preservation (run in the child process)."""
    import pymeshlab
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(vertices.astype(np.float64), faces.astype(np.int32)))
    meshes.meshing_decimation_quadric_edge_collapse(targetfacenum=target_faces, preservetopology=True,
                                                    preservenormal=True, optimalplacement=True)
    out = meshes.current_mesh()
    return out.vertex_matrix().astype(np.float32), out.face_matrix().astype(np.int64)
