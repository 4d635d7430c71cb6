"""Binary glTF 2.0 (.glb) of one triangle mesh, written here from the glTF 2.0 specification.

Positions, normals, and either vertex colours (COLOR_0, linear by the spec) or texture coordinates
(TEXCOORD_0) with an embedded PNG base-colour texture (sRGB by the spec, so the texture's sRGB bytes go
in as they are). The material is matte (metallic 0, roughness 1) so viewers do not shade the default
metallic one.
"""
from __future__ import annotations

import json

import numpy as np

from core.triangle_mesh import Mesh

_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963  # bufferView targets
_FLOAT, _UNSIGNED_INT = 5126, 5125  # accessor component types
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071  # sampler filters and wrap mode


def srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """uint8 sRGB [...,3] -> float32 linear [0,1] (IEC 61966-2-1 transfer function)."""
    c = colors.astype(np.float32) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def glb_bytes(mesh: Mesh, vertices: np.ndarray | None = None, normals: np.ndarray | None = None,
              texture_png: bytes | None = None) -> bytes:
    """The .glb file of `mesh` (vertices/normals override the mesh's, e.g. rotated ones).

    With texture_png (the PNG of mesh.texture) the mesh's uvs become TEXCOORD_0 and the image the
    material's baseColorTexture; vertex colours are then left out (glTF would multiply the two).
    """
    vertices = mesh.vertices if vertices is None else vertices
    normals = mesh.normals if normals is None else normals
    attributes = {"POSITION": (vertices.astype(np.float32), "VEC3")}
    if normals is not None:
        attributes["NORMAL"] = (normals.astype(np.float32), "VEC3")
    if texture_png is not None:
        attributes["TEXCOORD_0"] = (mesh.uvs.astype(np.float32), "VEC2")
    elif mesh.colors is not None:
        attributes["COLOR_0"] = (srgb_to_linear(mesh.colors), "VEC3")
    blobs, views, accessors = [], [], []
    offset = 0

    def add_view(raw: bytes, target: int | None) -> int:
        nonlocal offset
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw)}
                     | ({"target": target} if target else {}))
        blobs.append(raw + b"\0" * (-len(raw) % 4))
        offset += len(raw) + (-len(raw) % 4)
        return len(views) - 1

    def add(data: np.ndarray, target: int, accessor: dict) -> int:
        accessors.append({"bufferView": add_view(np.ascontiguousarray(data).tobytes(), target), **accessor})
        return len(accessors) - 1

    prim_attrs = {}
    for name, (data, kind) in attributes.items():
        acc = {"componentType": _FLOAT, "count": len(data), "type": kind}
        if name == "POSITION" and len(data):
            acc |= {"min": data.min(axis=0).tolist(), "max": data.max(axis=0).tolist()}
        prim_attrs[name] = add(data, _ARRAY_BUFFER, acc)
    indices = add(mesh.faces.astype(np.uint32).reshape(-1), _ELEMENT_ARRAY_BUFFER,
                  {"componentType": _UNSIGNED_INT, "count": int(mesh.faces.size), "type": "SCALAR"})
    pbr = {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    doc = {
        "asset": {"version": "2.0", "generator": "Triplane Studio"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": prim_attrs, "indices": indices, "material": 0, "mode": 4}]}],
        "materials": [{"pbrMetallicRoughness": pbr}],
        "accessors": accessors, "bufferViews": views,
    }
    if texture_png is not None:
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
        doc |= {"images": [{"bufferView": add_view(texture_png, None), "mimeType": "image/png"}],
                "samplers": [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR,
                              "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}],
                "textures": [{"sampler": 0, "source": 0}]}
    doc["buffers"] = [{"byteLength": offset}]
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(blobs)
    chunks = (len(text).to_bytes(4, "little") + b"JSON" + text
              + len(binary).to_bytes(4, "little") + b"BIN\0" + binary)
    return b"glTF" + (2).to_bytes(4, "little") + (12 + len(chunks)).to_bytes(4, "little") + chunks
