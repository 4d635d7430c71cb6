"""Mesh and density-volume files: PLY, OBJ (+ MTL and PNG when textured), GLB (`core.glb_file`), .npy
and .mrc.

Everything is written atomically (a temporary file renamed into place).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Literal

import numpy as np

from core.fileio import atomic_path
from core.glb_file import glb_bytes
from core.triangle_mesh import Mesh

MeshFormat = Literal["ply", "obj", "glb"]
FORMATS: tuple[str, ...] = ("ply", "obj", "glb")
TEXTURED_FORMATS: tuple[str, ...] = ("obj", "glb")

UpAxis = Literal["y", "z"]
UP_AXES: tuple[str, ...] = ("y", "z")

# World +y up (subject faces +z) -> +z up (subject faces -y, Blender's front view): +90 degrees about x.
_Y_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H,W,3] -> PNG file bytes (8-bit sRGB RGB)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def write_mesh(mesh: Mesh, path: str | os.PathLike, fmt: MeshFormat | None = None, up: UpAxis = "y") -> Path:
    """Write PLY / OBJ / GLB atomically, with vertex colours and normals when the mesh has them, or with
    its UV atlas and texture (OBJ: the .mtl and .png beside it, same stem; GLB: the PNG embedded).

    up='z' turns +y-up world coordinates into +z up (Blender, MeshLab's Z-up tools); GLB is +y up by
    the glTF spec (importers convert it themselves), so it takes only 'y'. -> the path.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown mesh format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if up not in UP_AXES:
        raise ValueError(f"unknown up axis {up!r} (expected y or z)")
    if fmt == "glb" and up != "y":
        raise ValueError("GLB files are +y up by the glTF spec (importers such as Blender's convert them); "
                         "use --up y with glb")
    textured = mesh.texture is not None
    if textured and fmt not in TEXTURED_FORMATS:
        raise ValueError(f"a textured mesh is written as {' or '.join(TEXTURED_FORMATS)}; {fmt} keeps vertex "
                         "colours (leave out the texture)")
    vertices, normals = mesh.vertices, mesh.normals
    if up == "z":
        vertices = vertices @ _Y_TO_Z_UP.T
        normals = None if normals is None else normals @ _Y_TO_Z_UP.T
    if textured and fmt == "obj":
        return _write_textured_obj(mesh, vertices, normals, path)
    with atomic_path(path) as tmp:
        if fmt == "glb":
            tmp.write_bytes(glb_bytes(mesh, vertices, normals, png_bytes(mesh.texture) if textured else None))
            return path
        import trimesh
        colors = None
        if mesh.colors is not None:
            colors = np.concatenate([mesh.colors, np.full((len(mesh.colors), 1), 255, np.uint8)], axis=1)
        tm = trimesh.Trimesh(vertices, mesh.faces, vertex_colors=colors, process=False)
        if normals is not None:
            tm.vertex_normals = normals
        if fmt == "obj":
            tmp.write_text(trimesh.exchange.obj.export_obj(tm, include_color=colors is not None,
                                                           include_normals=normals is not None))
        else:
            tmp.write_bytes(trimesh.exchange.ply.export_ply(tm, vertex_normal=normals is not None))
    return path


def _rows(tag: str, values: np.ndarray, fmt: str) -> str:
    buf = io.StringIO()
    np.savetxt(buf, values, fmt=f"{tag} {fmt}")
    return buf.getvalue()


def _write_textured_obj(mesh: Mesh, vertices: np.ndarray, normals: np.ndarray | None, path: Path) -> Path:
    """OBJ with v/vt/vn per vertex and `f a/a/a`, its MTL (map_Kd) and the PNG, all named after path's stem.

    OBJ's texture v grows upwards from the image's last row, so v is flipped from the glTF convention.
    """
    png, mtl = path.with_suffix(".png"), path.with_suffix(".mtl")
    with atomic_path(png) as tmp:
        tmp.write_bytes(png_bytes(mesh.texture))
    with atomic_path(mtl) as tmp:
        tmp.write_text("# Triplane Studio\nnewmtl surface\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
                       f"map_Kd {png.name}\n")
    uv = np.stack([mesh.uvs[:, 0], 1 - mesh.uvs[:, 1]], axis=1)
    f = mesh.faces + 1
    if normals is None:
        faces = _rows("f", np.repeat(f, 2, axis=1), "%d/%d %d/%d %d/%d")
    else:
        faces = _rows("f", np.repeat(f, 3, axis=1), "%d/%d/%d %d/%d/%d %d/%d/%d")
    text = (f"# Triplane Studio\nmtllib {mtl.name}\n" + _rows("v", vertices, "%.6f %.6f %.6f")
            + _rows("vt", uv, "%.6f %.6f") + ("" if normals is None else _rows("vn", normals, "%.6f %.6f %.6f"))
            + "usemtl surface\n" + faces)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
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
