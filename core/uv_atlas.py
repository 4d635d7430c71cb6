"""UV atlas: the mesh cut into charts, flattened and packed into the unit square by xatlas.

xatlas's chart growing costs more than linearly in the faces of one mesh (on the 2-core CPU a 50k-face
surface took 20 s as one mesh, 2-3 s as 3k-face pieces), so the surface is first cut into spatially
compact pieces of about PIECE_FACES faces (recursive halving along the longest side of the face
centroids); xatlas charts each piece and packs all charts into one atlas. The cuts become chart seams.
Vertices on seams are duplicated (one copy per chart), so the result has more vertices than the input.
"""
from __future__ import annotations

import numpy as np

from core.progress import Progress, report
from core.triangle_mesh import Mesh

MIN_TEXTURE, MAX_TEXTURE = 16, 4096
"""Texture sides accepted (baking 4096² peaked at 2.5 GB of memory; 8192² would need about four times that)."""
PIECE_FACES = 3000
"""Faces per piece handed to xatlas."""
PADDING = 2
"""Texels between charts in the atlas (with bilinear filtering, room for the dilated border)."""
PACK_RESOLUTION = 1024
"""Charts are packed at most at this resolution and the UVs scaled up (xatlas's packing time grows with
it: 12 CPU-s at 4096); a larger texture gets proportionally wider gutters instead."""


def check_texture_size(size: int) -> None:
    """ValueError naming the range unless MIN_TEXTURE <= size <= MAX_TEXTURE."""
    if not MIN_TEXTURE <= size <= MAX_TEXTURE:
        raise ValueError(f"texture size must be {MIN_TEXTURE}..{MAX_TEXTURE} texels, got {size}")


def pieces(vertices: np.ndarray, faces: np.ndarray, size: int = PIECE_FACES) -> list[np.ndarray]:
    """Face indices of spatially compact pieces of at most `size` faces each (recursive median split)."""
    centroids = vertices[faces].mean(axis=1)
    out, todo = [], [np.arange(len(faces))]
    while todo:
        part = todo.pop()
        if len(part) <= size:
            out.append(part)
            continue
        c = centroids[part]
        axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
        order = part[np.argsort(c[:, axis], kind="stable")]
        todo += [order[len(order) // 2:], order[:len(order) // 2]]
    return out


def uv_atlas(mesh: Mesh, size: int, progress: Progress | None = None) -> Mesh:
    """Mesh -> the same surface with a UV atlas for a size x size texture (`Mesh.uvs`, glTF convention).

    Colours and normals follow their vertices; faces keep their order and winding. Charts keep square
    texels (one scale for u and v) and at least PADDING texels between them.
    """
    import xatlas
    check_texture_size(size)
    report(progress, 0, 2, "unwrap: charts")
    parts = pieces(mesh.vertices, mesh.faces)
    atlas = xatlas.Atlas()
    used_per_part = []
    for part in parts:
        used, local = np.unique(mesh.faces[part], return_inverse=True)
        atlas.add_mesh(mesh.vertices[used], local.reshape(-1, 3).astype(np.uint32))
        used_per_part.append(used)
    pack = xatlas.PackOptions()
    pack.resolution = min(size, PACK_RESOLUTION)
    pack.padding = max(1, round(PADDING * pack.resolution / size))
    atlas.generate(xatlas.ChartOptions(), pack)
    report(progress, 1, 2, "unwrap: packed")
    width, height = atlas.width, atlas.height
    scale = np.array([width, height], np.float32) / max(width, height)  # square texels
    vmaps, faces, uvs = [], np.empty_like(mesh.faces), []
    base = 0
    for i, (part, used) in enumerate(zip(parts, used_per_part)):
        vmap, local_faces, uv = atlas[i]
        vmaps.append(used[vmap])
        faces[part] = local_faces.astype(np.int64) + base
        uvs.append(uv * scale)
        base += len(vmap)
    vmap = np.concatenate(vmaps)
    report(progress, 2, 2, "unwrap done")
    return Mesh(mesh.vertices[vmap], faces,
                colors=None if mesh.colors is None else mesh.colors[vmap],
                normals=None if mesh.normals is None else mesh.normals[vmap],
                uvs=np.concatenate(uvs).astype(np.float32))
