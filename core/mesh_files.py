"""Mesh and density-volume files: PLY, OBJ, GLB (written here from the glTF 2.0 spec), .npy and .mrc.

Everything is written atomically (a temporary file renamed into place).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from core.fileio import atomic_path

if TYPE_CHECKING:
    from core.mesh import Mesh

MeshFormat = Literal["ply", "obj", "glb"]
FORMATS: tuple[str, ...] = ("ply", "obj", "glb")

UpAxis = Literal["y", "z"]
UP_AXES: tuple[str, ...] = ("y", "z")

# World +y up (subject faces +z) -> +z up (subject faces -y, Blender's front view): +90 degrees about x.
_Y_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)

_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963  # glTF bufferView targets
_FLOAT, _UNSIGNED_INT = 5126, 5125  # glTF accessor component types


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """uint8 sRGB [...,3] -> float32 linear [0,1] (IEC 61966-2-1 transfer function)."""
    c = colors.astype(np.float32) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def write_mesh(mesh: Mesh, path: str | os.PathLike, fmt: MeshFormat | None = None, up: UpAxis = "y") -> Path:
    """Write PLY / OBJ / GLB atomically, with vertex colours and normals when the mesh has them.

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
    vertices, normals = mesh.vertices, mesh.normals
    if up == "z":
        vertices = vertices @ _Y_TO_Z_UP.T
        normals = None if normals is None else normals @ _Y_TO_Z_UP.T
    with atomic_path(path) as tmp:
        if fmt == "glb":
            tmp.write_bytes(glb_bytes(vertices, mesh.faces, normals, mesh.colors))
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


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None,
              colors: np.ndarray | None = None) -> bytes:
    """A binary glTF 2.0 file with one indexed triangle mesh.

    COLOR_0 is linear by the spec: the sRGB colours are converted (float32). A matte material
    (metallic 0) keeps viewers from shading the default metallic one.
    """
    import json
    attributes = {"POSITION": vertices.astype(np.float32)}
    if normals is not None:
        attributes["NORMAL"] = normals.astype(np.float32)
    if colors is not None:
        attributes["COLOR_0"] = srgb_to_linear(colors)
    blobs, views, accessors = [], [], []
    offset = 0

    def add(data: np.ndarray, target: int, accessor: dict) -> int:
        nonlocal offset
        raw = np.ascontiguousarray(data).tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw), "target": target})
        blobs.append(raw + b"\0" * (-len(raw) % 4))
        offset += len(raw) + (-len(raw) % 4)
        accessors.append({"bufferView": len(views) - 1, **accessor})
        return len(accessors) - 1

    prim_attrs = {}
    for name, data in attributes.items():
        acc = {"componentType": _FLOAT, "count": len(data), "type": "VEC3"}
        if name == "POSITION" and len(data):
            acc |= {"min": data.min(axis=0).tolist(), "max": data.max(axis=0).tolist()}
        prim_attrs[name] = add(data, _ARRAY_BUFFER, acc)
    indices = add(faces.astype(np.uint32).reshape(-1), _ELEMENT_ARRAY_BUFFER,
                  {"componentType": _UNSIGNED_INT, "count": int(faces.size), "type": "SCALAR"})
    doc = {
        "asset": {"version": "2.0", "generator": "Triplane Studio"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": prim_attrs, "indices": indices, "material": 0, "mode": 4}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0}}],
        "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": offset}],
    }
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(blobs)
    chunks = (len(text).to_bytes(4, "little") + b"JSON" + text
              + len(binary).to_bytes(4, "little") + b"BIN\0" + binary)
    return b"glTF" + (2).to_bytes(4, "little") + (12 + len(chunks)).to_bytes(4, "little") + chunks


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
