"""Mesh export: grid density vs the decoder, coarse-to-fine == dense, files load back with colours."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import mesh as M
from core.images import seed_ws
from core.progress import Cancelled, Progress


@pytest.fixture(scope="module")
def latent(small_G):
    ws = seed_ws(small_G, 0, psi=0.7)
    with torch.no_grad():
        return ws, small_G.planes(ws)


def _field(G, planes, n, step=4):
    padded = (-(-(n - 1) // step) + 1) * step
    return M.GridDensity(G.decoder, planes, G.options.box_warp, n, padded)


def test_grid_density_matches_decoder(small_G, latent):
    _, planes = latent
    field = _field(small_G, planes, 40)
    dense = M.dense_density(field)
    idx = torch.from_numpy(np.random.RandomState(0).randint(0, 40, (3000, 3)))
    ref = small_G.sample_planes(planes, field.coords(idx)[None])["sigma"][0, :, 0].numpy()
    got = dense[idx[:, 0], idx[:, 1], idx[:, 2]]
    assert np.ptp(ref) > 20  # the fixture has empty and solid regions
    np.testing.assert_allclose(got, ref, atol=2e-4 * np.abs(ref).max())


@pytest.mark.parametrize("n,step,crop", [(64, 4, True), (57, 4, False), (50, 3, True)])
def test_coarse_to_fine_surface_equals_dense(small_G, latent, n, step, crop):
    _, planes = latent
    field = _field(small_G, planes, n, step)
    dense = M.dense_density(field, crop_border=crop)
    fast = M.coarse_to_fine_density(field, 10.0, step, crop_border=crop, dilate=M.MeshOptions.dilate)
    a, b = M.marching_cubes(dense, 10.0, 1.0), M.marching_cubes(fast, 10.0, 1.0)
    assert len(a.faces) > 200
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    assert (fast != dense)[dense > -1000].mean() > 0.5  # most of the kept grid was only interpolated


def test_vertices_are_world_points_on_the_level_set(small_G, latent):
    ws, planes = latent
    mesh = M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=96, color="none"))
    assert mesh.colors is None and len(mesh.vertices) > 500
    inner = 0.5 - 0.5 * round(96 * M.CROP_FRACTION) / 95
    assert np.abs(mesh.vertices).max() <= inner + 1e-6  # inside the box minus the cropped border
    sigma = small_G.sample_planes(planes, torch.from_numpy(mesh.vertices)[None])["sigma"][0, :, 0].numpy()
    away = np.abs(mesh.vertices).max(axis=1) < inner - 0.02  # not on the crop's cut faces
    # Linear interpolation along cell edges: the true density at the vertices stays near the level.
    assert np.median(np.abs(sigma[away] - 10.0)) < 1.0


def _glb_attribute(path, name: str) -> np.ndarray:
    """Read one float32 VEC3 vertex attribute of a GLB's first primitive straight from the file."""
    import json
    import struct
    data = path.read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_len])
    binary = data[20 + json_len + 8:]
    acc = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"][name]]
    view = doc["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5126 and acc["type"] == "VEC3" and view["target"] == 34962
    start = view["byteOffset"] + acc.get("byteOffset", 0)
    return np.frombuffer(binary[start:start + acc["count"] * 12], np.float32).reshape(-1, 3)


def _file_normals(path) -> np.ndarray:
    """Vertex normals as stored in a PLY (parsed by trimesh, which may recompute them on load) or OBJ."""
    if path.suffix == ".ply":
        import trimesh
        with open(path, "rb") as f:
            return trimesh.exchange.ply.load_ply(f)["vertex_normals"]
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    assert all(("//" in w) for line in lines if line[0] == "f" for w in line[1:])  # faces reference them
    return np.array([[float(x) for x in line[1:4]] for line in lines if line[0] == "vn"], np.float32)


@pytest.fixture(scope="module")
def coloured_mesh(small_G, latent):
    ws, planes = latent
    return M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=64))


def test_normals_follow_the_density_gradient(coloured_mesh):
    import trimesh
    mesh = coloured_mesh
    assert mesh.normals.shape == mesh.vertices.shape and mesh.normals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1, atol=1e-5)
    faceted = np.asarray(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).vertex_normals)
    agree = (mesh.normals * faceted).sum(axis=1)
    assert np.median(agree) > 0.8 and (agree > 0).mean() > 0.9  # outward, like the triangles' normals
    # Smoother than the triangles: neighbouring vertices' normals differ less.
    edges = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]]])
    def roughness(n):
        return np.median(1 - (n[edges[:, 0]] * n[edges[:, 1]]).sum(axis=1))
    assert roughness(mesh.normals) < roughness(faceted)


@pytest.mark.parametrize("fmt", M.FORMATS)
def test_mesh_file_loads_back_with_colours_and_normals(coloured_mesh, tmp_path, fmt):
    import trimesh
    mesh = coloured_mesh
    assert mesh.colors.shape == (len(mesh.vertices), 3) and mesh.colors.dtype == np.uint8
    assert mesh.colors.std(axis=0).max() > 2  # colours vary over the surface
    path = M.write_mesh(mesh, tmp_path / f"seed.{fmt}")
    back = trimesh.load(path, force="mesh", process=False)
    assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    assert back.volume > 0  # faces wind outwards
    if fmt == "glb":  # glTF's COLOR_0 is linear: sRGB 0.5 is stored as about 0.214
        np.testing.assert_allclose(_glb_attribute(path, "NORMAL"), mesh.normals, atol=1e-6)
        linear = _glb_attribute(path, "COLOR_0")
        srgb = mesh.colors / 255
        expected = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
        np.testing.assert_allclose(linear, expected, atol=1e-6)
        assert (linear <= mesh.colors / 255 + 1e-6).all() and (linear < mesh.colors / 255 - 0.05).any()
    else:
        np.testing.assert_array_equal(np.asarray(back.visual.vertex_colors)[:, :3], mesh.colors)
        np.testing.assert_allclose(_file_normals(path), mesh.normals, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [f"seed.{fmt}"]  # no temporary left behind


@pytest.mark.parametrize("fmt", ["ply", "obj"])
def test_up_z_turns_the_head_upright_for_z_up_tools(coloured_mesh, tmp_path, fmt):
    import trimesh
    mesh = coloured_mesh
    path = M.write_mesh(mesh, tmp_path / f"z.{fmt}", up="z")
    back = trimesh.load(path, force="mesh", process=False)
    v = mesh.vertices
    np.testing.assert_allclose(back.vertices, np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1), atol=1e-5)
    np.testing.assert_allclose(_file_normals(path)[:, 2], mesh.normals[:, 1], atol=1e-6)  # old +y is +z
    assert back.volume > 0  # a rotation, not a mirror: still outward
    with pytest.raises(ValueError, match="glTF"):
        M.write_mesh(mesh, tmp_path / "z.glb", up="z")


def test_view_colours_come_from_renderings(small_G, latent):
    ws, planes = latent
    mesh = M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=48, color="none"))
    decoder = M.decoder_colors(small_G, planes, mesh.vertices)
    views = M.view_colors(small_G, planes, ws, mesh, num_views=2)
    assert views.shape == decoder.shape
    changed = np.abs(views.astype(int) - decoder).max(axis=1) > 0
    assert 0.05 < changed.mean()  # a real share of the vertices is seen by the cameras


def test_volume_round_trip_and_mrc_message(tmp_path):
    vol = np.random.RandomState(1).randn(9, 9, 9).astype(np.float32)
    np.testing.assert_array_equal(np.load(M.write_volume(vol, tmp_path / "v.npy")), vol)
    try:
        import mrcfile
    except ImportError:  # without the package: one clear message, and no file
        with pytest.raises(ValueError, match="mrcfile"):
            M.write_volume(vol, tmp_path / "v.mrc")
        assert not (tmp_path / "v.mrc").exists()
    else:  # with it: the volume reads back z-slowest with the voxel size set
        with mrcfile.open(M.write_volume(vol, tmp_path / "v.mrc", box_warp=0.8)) as mrc:
            np.testing.assert_array_equal(mrc.data, vol.transpose(2, 1, 0))
            assert np.isclose(float(mrc.voxel_size.x), 0.8 / 8)
    with pytest.raises(ValueError, match="format"):
        M.write_volume(vol, tmp_path / "v.raw")


def test_cancel_stops_density(small_G, latent):
    class CancelSoon(Progress):
        def update(self, done, total, message=""):
            self.cancel()
            super().update(done, total, message)

    _, planes = latent
    with pytest.raises(Cancelled):
        M.extract_mesh(small_G, planes, None, M.MeshOptions(resolution=64, chunk=4096),
                       progress=CancelSoon())


def test_bad_options_raise_value_errors(small_G, latent):
    ws, planes = latent
    with pytest.raises(ValueError, match="resolution"):
        M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=4))
    with pytest.raises(ValueError, match="colour"):
        M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=16, color="paint"))
    with pytest.raises(ValueError, match="format"):
        M.write_mesh(M.Mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]])), "x.stl")


def test_clean_volume_fills_bubbles_and_drops_dust_but_keeps_parts():
    """A hollow ball, a separate block (a 'leg') and a one-voxel speck: cleaning leaves ball and block,
    with the ball's outer surface exactly as before."""
    import trimesh
    g = np.linspace(-0.5, 0.5, 64, dtype=np.float32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    shell = np.minimum(0.3 - r, r - 0.15)  # > 0 between radii 0.15 and 0.3
    block = np.minimum.reduce([0.06 - np.abs(x - 0.38), 0.06 - np.abs(y), 0.06 - np.abs(z)])
    vol = 10 + 100 * np.maximum(shell, block)
    vol[5, 5, 5] = 20  # a speck far from everything

    def parts(volume):
        mesh = M.marching_cubes(volume, 10.0, 1.0)
        pieces = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True).split(only_watertight=False)
        return sorted(pieces, key=lambda p: -len(p.faces))

    raw, clean = parts(vol), parts(M.clean_volume(vol, 10.0))
    assert len(raw) == 4 and len(clean) == 2  # outer, cavity, block, speck -> outer, block
    for kept, before in ((clean[0], raw[0]), (clean[1], raw[2])):  # raw[1] is the cavity's surface
        np.testing.assert_array_equal(np.unique(kept.vertices, axis=0), np.unique(before.vertices, axis=0))
    assert all(p.is_watertight for p in clean) and clean[0].volume > 0


def test_drop_degenerate_faces_keeps_the_surface():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [5, 5, 5], [6, 5, 5], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [3, 4, 5], [0, 2, 6], [4, 3, 5]])
    mesh = M.drop_degenerate_faces(M.Mesh(v, f))
    np.testing.assert_array_equal(mesh.vertices[mesh.faces], v[f[[0, 2]]])
    assert len(mesh.vertices) == 4


def test_occupancy_iou_of_mesh_volumes(snapshot_pkl, tmp_path):
    """scripts.occupancy_iou on what `mesh --volume npy` writes: a seed against itself is 1, two seeds less."""
    import subprocess
    import sys

    from scripts.occupancy_iou import pairwise_iou
    r = subprocess.run([sys.executable, "main.py", "mesh", str(snapshot_pkl), "--seeds", "0-1", "--volume", "npy",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    vols = [np.load(tmp_path / f"seed000{s}.npy") for s in (0, 1)]
    level = float(np.percentile(vols[0], 95))  # inside the box (the cropped border holds -1000)
    assert pairwise_iou([vols[0], vols[0]], level)[0] == 1.0
    a, b = vols[0] > level, vols[1] > level
    iou = pairwise_iou(vols, level)[0]
    assert 0.0 < iou < 1.0 and iou == pytest.approx((a & b).sum() / (a | b).sum())


MESH_MODULES = ("mesh", "mesh_files", "glb_file", "triangle_mesh", "vertex_attributes", "view_projection",
                "rasterizer", "decimation", "uv_atlas", "texture_bake", "density_grid", "coarse_to_fine")


def test_mesh_modules_are_layered_without_cycles():
    """Every `core.*` import of the mesh modules, at any depth of the file (functions and TYPE_CHECKING
    blocks included), points one way: the graph among them has no cycle, and `Mesh` sits at the bottom."""
    import ast
    from graphlib import CycleError, TopologicalSorter

    from conftest import ROOT
    graph = {}
    for name in MESH_MODULES:
        tree = ast.parse((ROOT / "core" / f"{name}.py").read_text())
        targets = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        targets |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        graph[name] = {t.split(".")[1] for t in targets if t.startswith("core.") and t.split(".")[1] in MESH_MODULES}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        pytest.fail(f"import cycle among the mesh modules: {e.args[1]}")
    assert graph["triangle_mesh"] == set() and order[-1] == "mesh"
    assert M.Mesh.__module__ == "core.triangle_mesh"


def test_decimating_a_model_surface_keeps_it_closed(small_G, latent):
    import trimesh
    ws, planes = latent
    mesh = M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=96, color="none"))
    closed = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert closed.is_watertight
    small = M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=96, color="none", faces=1000))
    reduced = trimesh.Trimesh(small.vertices, small.faces, process=False)
    assert abs(len(small.faces) - 1000) <= 10 and reduced.is_watertight and reduced.is_winding_consistent
    assert reduced.volume == pytest.approx(closed.volume, rel=0.05)
    assert small.normals.shape == small.vertices.shape  # attributes sampled again at the new vertices
