"""Textured meshes: rasteriser, decimation, UV atlas, texture baking and the GLB / OBJ+MTL+PNG files,
checked against independent paths (numpy point-in-triangle, the decoder at the points, trimesh, PIL)."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import torch

from core import mesh as M
from core.decimation import decimate
from core.images import seed_ws
from core.progress import Cancelled, Progress
from core.rasterizer import depth_buffer, rasterize
from core.texture_bake import bake_texture, dilate
from core.uv_atlas import uv_atlas

SIZE = 256


@pytest.fixture(scope="module")
def latent(small_G):
    ws = seed_ws(small_G, 0, psi=0.7)
    with torch.no_grad():
        return ws, small_G.planes(ws)


@pytest.fixture(scope="module")
def textured(small_G, latent):
    """The fixture's surface at 128³, decimated to 3000 faces, with a decoder-baked SIZE² texture."""
    ws, planes = latent
    return M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=128, faces=3000, texture=SIZE))


def bilinear(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample texture [S,S,3] at glTF uvs [N,2] (v down, texel centres at (j+0.5)/S), edge clamp."""
    s = texture.shape[0]
    x, y = uv[:, 0] * s - 0.5, uv[:, 1] * s - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture.astype(np.float64)

    def at(r, c):
        return t[np.clip(r, 0, s - 1), np.clip(c, 0, s - 1)]
    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def inside_texels(uv_tri: np.ndarray, size: int, margin: float = 1e-3):
    """Independent coverage (float64 numpy): (texel rows, cols, face index, barycentrics) of the texel
    centres strictly inside a UV triangle (by `margin` in barycentric terms)."""
    out = []
    for f, tri in enumerate(uv_tri * size):
        lo, hi = np.floor(tri.min(0)).astype(int), np.ceil(tri.max(0)).astype(int)
        cols, rows = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
        p = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], 1)
        a, b, c = tri
        m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
        if abs(np.linalg.det(m)) < 1e-12:
            continue
        wbc = np.linalg.solve(m, (p - a).T).T
        w = np.concatenate([1 - wbc.sum(1, keepdims=True), wbc], 1)
        ok = (w > margin).all(1) & (p >= 0).all(1) & (p < size).all(1)
        out += [(int(r), int(cc), f, ww) for (cc, r), ww in zip(p[ok] - 0.5, w[ok])]
    return out


def test_rasteriser_covers_exactly_the_pixel_centres_inside():
    rng = np.random.RandomState(0)
    tri = rng.uniform(-4, 36, (60, 3, 2))
    tri[:5] = rng.uniform(10, 11, (5, 3, 2))  # small ones, maybe covering no centre
    frags = rasterize(torch.from_numpy(tri), 32, 32)
    got = set(zip(frags.pixel.tolist(), frags.face.tolist()))
    strict = {(r * 32 + c, f) for r, c, f, _ in inside_texels(tri / 32, 32, margin=1e-4)}
    assert strict and strict <= got
    # every fragment's weights rebuild its pixel centre and are (up to the edge slack) non-negative
    pix = frags.pixel.numpy()
    centre = np.stack([pix % 32 + 0.5, pix // 32 + 0.5], 1)
    rebuilt = (frags.bary.numpy()[:, :, None] * tri[frags.face.numpy()]).sum(1)
    np.testing.assert_allclose(rebuilt, centre, atol=1e-3)
    assert frags.bary.min() > -1e-4 and len(got) < len(strict) * 1.1  # edges add few


def test_depth_buffer_keeps_the_nearest_surface():
    square = torch.tensor([[[0, 0], [8, 0], [0, 8]], [[8, 0], [8, 8], [0, 8]]], dtype=torch.float32)
    tri = torch.cat([square, square[:1] + 2])  # a third triangle over part of the square
    depth = torch.tensor([[5.0] * 3, [5.0] * 3, [2.0, 2.0, 2.0]])
    z = depth_buffer(tri, depth, 12, 12)
    assert z[1, 1].item() == pytest.approx(5) and z[3, 3].item() == pytest.approx(2) and torch.isinf(z[11, 11])
    tilted = depth_buffer(square[:1], torch.tensor([[1.0, 2.0, 1.0]]), 8, 8)
    # perspective: inverse depth is linear across the screen; at x = 4 (halfway) 1/z = (1 + 1/2) / 2
    assert tilted[0, 4].item() == pytest.approx(1 / (1 - 0.5 * (4.5 / 8)), rel=1e-5)


def _ball_mesh(n=48) -> M.Mesh:
    g = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    vol = 10 + 100 * (0.35 - np.sqrt(x ** 2 + (1.3 * y) ** 2 + z ** 2))
    return M.drop_degenerate_faces(M.marching_cubes(vol, 10.0, 1.0))


def test_decimation_keeps_a_closed_surface_closed():
    import trimesh
    ball = _ball_mesh()
    before = trimesh.Trimesh(ball.vertices, ball.faces, process=False)
    assert before.is_watertight and len(ball.faces) > 8000
    small = decimate(ball, 1000)
    after = trimesh.Trimesh(small.vertices, small.faces, process=False)
    assert abs(len(small.faces) - 1000) <= 10
    assert after.is_watertight and after.is_winding_consistent and after.volume > 0
    assert after.volume == pytest.approx(before.volume, rel=0.02)
    assert len(np.unique(small.faces)) == len(small.vertices)  # no vertex left unused


def test_face_counts_out_of_range_are_value_errors():
    ball = _ball_mesh(24)
    with pytest.raises(ValueError, match=f"more than the mesh's {len(ball.faces)} faces"):
        decimate(ball, len(ball.faces) + 1)
    with pytest.raises(ValueError, match="at least 4"):
        decimate(ball, 3)


def test_uv_atlas_keeps_the_surface_and_packs_charts_without_overlap():
    ball = _ball_mesh()
    ball.normals = np.asarray(ball.vertices / np.linalg.norm(ball.vertices, axis=1, keepdims=True), np.float32)
    atlas = uv_atlas(decimate(ball, 4000), SIZE)
    dec = decimate(ball, 4000)
    np.testing.assert_array_equal(atlas.vertices[atlas.faces], dec.vertices[dec.faces])  # same faces, winding
    assert atlas.uvs.min() >= 0 and atlas.uvs.max() <= 1
    frags = rasterize(torch.from_numpy(atlas.uvs[atlas.faces] * SIZE), SIZE, SIZE)
    unique = len(torch.unique(frags.pixel))
    assert unique > 0.4 * SIZE * SIZE  # the charts use the square
    assert len(frags.pixel) < unique * 1.05  # texels shared only along edges inside a chart


def test_decoder_texture_matches_the_vertex_colours(small_G, latent, textured):
    """The issue's check: the texture sampled at each vertex's UV against the vertex colour the PLY of
    the same mesh holds (decoder colour at the vertex): mean abs difference <= 2/255."""
    _, planes = latent
    mesh = textured
    assert mesh.texture.shape == (SIZE, SIZE, 3) and mesh.colors is None
    assert abs(len(mesh.faces) - 3000) <= 30
    sampled = bilinear(mesh.texture, mesh.uvs)
    expected = M.decoder_colors(small_G, planes, mesh.vertices).astype(np.float64)
    assert expected.std(axis=0).max() > 5  # the surface is not one flat colour
    assert np.abs(sampled - expected).mean() <= 2


def test_every_covered_texel_holds_the_decoder_colour_of_its_surface_point(small_G, latent, textured):
    _, planes = latent
    mesh = textured
    hits = inside_texels(mesh.uvs[mesh.faces], SIZE)
    rows = np.array([h[0] for h in hits])
    cols = np.array([h[1] for h in hits])
    points = np.stack([(h[3][:, None] * mesh.vertices[mesh.faces[h[2]]]).sum(0) for h in hits]).astype(np.float32)
    expected = M.decoder_colors(small_G, planes, points).astype(int)
    got = mesh.texture[rows, cols].astype(int)
    assert len(hits) > 0.1 * SIZE * SIZE
    assert np.abs(got - expected).max() <= 1  # every covered texel baked (float rounding at most)


def test_dilated_gutters_hide_seams_at_lower_mip_levels(textured):
    mesh = textured
    covered = np.zeros((SIZE, SIZE), bool)
    frags = rasterize(torch.from_numpy(mesh.uvs[mesh.faces] * SIZE), SIZE, SIZE)
    covered.flat[frags.pixel.numpy()] = True
    bare = np.where(covered[..., None], mesh.texture, 0).astype(np.uint8)  # gutters left black
    np.testing.assert_array_equal(dilate(bare, covered), mesh.texture)

    def mip(t, level):
        k = 2 ** level
        return t.reshape(SIZE // k, k, SIZE // k, k, 3).astype(np.float64).mean(axis=(1, 3))
    full = bilinear(mesh.texture, mesh.uvs)
    err = {name: np.abs(bilinear(mip(t, 3), mesh.uvs) - full).mean() for name, t in
           (("dilated", mesh.texture), ("bare", bare))}
    assert err["dilated"] < 8 and err["bare"] > 2 * err["dilated"]


def _glb(path):
    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + n]), data[20 + n + 8:]


def _looks_like_the_decoder(G, planes, loaded, image) -> None:
    """trimesh's own texture lookup at the loaded UVs (nearest texel) against the decoder's colour at the
    loaded vertices: the file's UV convention and its image agree with the surface."""
    import trimesh
    colours = trimesh.visual.color.uv_to_color(np.asarray(loaded.visual.uv), image)[:, :3].astype(float)
    expected = M.decoder_colors(G, planes, np.asarray(loaded.vertices, np.float32))
    assert np.abs(colours - expected).mean() < 4


def test_glb_has_uvs_normals_and_an_embedded_srgb_png(small_G, latent, textured, tmp_path):
    import trimesh
    from PIL import Image
    path = M.write_mesh(textured, tmp_path / "t.glb")
    doc, binary = _glb(path)
    prim = doc["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0"}  # no COLOR_0 to multiply in
    uv_acc = doc["accessors"][prim["attributes"]["TEXCOORD_0"]]
    assert uv_acc["type"] == "VEC2" and uv_acc["componentType"] == 5126
    view = doc["bufferViews"][uv_acc["bufferView"]]
    uvs = np.frombuffer(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]], np.float32)
    np.testing.assert_array_equal(uvs.reshape(-1, 2), textured.uvs)
    tex = doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]
    image = doc["images"][doc["textures"][tex["index"]]["source"]]
    assert image["mimeType"] == "image/png"
    view = doc["bufferViews"][image["bufferView"]]
    png = Image.open(io.BytesIO(binary[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]))
    assert png.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(png), textured.texture)  # sRGB bytes as baked, not linearised
    scene = trimesh.load(path, process=False)
    back = next(iter(scene.geometry.values()))
    np.testing.assert_allclose(back.vertices, textured.vertices, atol=1e-6)
    assert np.asarray(back.visual.material.baseColorTexture).shape == (SIZE, SIZE, 3)
    _looks_like_the_decoder(small_G, latent[1], back, back.visual.material.baseColorTexture)


def test_obj_comes_with_mtl_and_png_that_trimesh_attaches(small_G, latent, textured, tmp_path):
    import trimesh
    path = M.write_mesh(textured, tmp_path / "t.obj")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mtl", "t.obj", "t.png"]
    assert "map_Kd t.png" in (tmp_path / "t.mtl").read_text()
    back = trimesh.load(path, process=False)
    assert len(back.faces) == len(textured.faces)
    np.testing.assert_array_equal(np.asarray(back.visual.material.image), textured.texture)
    np.testing.assert_allclose(back.vertices[back.faces], textured.vertices[textured.faces], atol=1e-6)
    # OBJ's v grows upwards: flipped back, the corners' UVs are the mesh's
    uv = np.asarray(back.visual.uv)[back.faces]
    np.testing.assert_allclose(np.stack([uv[..., 0], 1 - uv[..., 1]], -1), textured.uvs[textured.faces], atol=1e-6)
    _looks_like_the_decoder(small_G, latent[1], back, back.visual.material.image)


def test_ply_refuses_a_texture(textured, tmp_path):
    with pytest.raises(ValueError, match="obj or glb"):
        M.write_mesh(textured, tmp_path / "t.ply")
    assert not list(tmp_path.iterdir())


def test_view_texture_takes_the_renderings_where_seen(small_G, latent):
    ws, planes = latent
    options = M.MeshOptions(resolution=64, faces=1000, texture=128, texture_from="views", num_views=2)
    mesh = M.extract_mesh(small_G, planes, ws, options)
    decoder = bake_texture(small_G, planes, mesh, 128)
    changed = np.abs(mesh.texture.astype(int) - decoder).max(axis=2) > 8
    assert 0.05 < changed.mean() < 0.95  # the views cover part of the surface, the decoder the rest


PHASES = ("coarse", "refining", "density done", "marching cubes", "decimation", "normals", "unwrap", "bake: decoder",
          "bake: gutters")


class Recording(Progress):
    """Keeps the phase of every update; cancels itself once `stop_at` shows up."""

    def __init__(self, stop_at: str | None = None):
        super().__init__()
        self.phases: list[str] = []
        self.stop_at = stop_at

    def update(self, done, total, message=""):
        phase = next((p for p in PHASES if p in message), message)
        if not self.phases or self.phases[-1] != phase:
            self.phases.append(phase)
        if phase == self.stop_at:
            self.cancel()
        super().update(done, total, message)


@pytest.mark.parametrize("stop_at", [None, *PHASES])
def test_every_phase_reports_progress_and_stops_when_cancelled(small_G, latent, stop_at):
    ws, planes = latent
    options = M.MeshOptions(resolution=64, faces=1000, texture=64)
    progress = Recording(stop_at)
    if stop_at is None:
        M.extract_mesh(small_G, planes, ws, options, progress)
        assert progress.phases == list(PHASES)
    else:
        with pytest.raises(Cancelled):
            M.extract_mesh(small_G, planes, ws, options, progress)
        assert progress.phases == list(PHASES[:PHASES.index(stop_at) + 1])  # nothing ran past it


def _main(capsys, *args) -> tuple[int, str, str]:
    """`main.py ARGS` in this process (no interpreter start-up) -> (exit code, stdout, stderr)."""
    import main
    try:
        code = main.main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_mesh_command_glb_texture_matches_the_ply_of_the_same_mesh(snapshot_pkl, tmp_path, capsys):
    """`mesh --faces N --texture S --format glb` against `mesh --faces N --format ply` (vertex colours),
    both read back by trimesh; an inverted latent (--latent) of the same ws exports the same GLB."""
    import trimesh
    from scipy.spatial import cKDTree

    from core.checkpoint import load_generator
    from core.latents import SavedLatent, save_latent
    common = ["--res", "96", "--faces", "1500", "--device", "cpu"]
    code, _, err = _main(capsys, "mesh", snapshot_pkl, "--seeds", "0", "--format", "ply", "--out", tmp_path / "ply",
                         *common)
    assert code == 0, err
    code, out, err = _main(capsys, "mesh", snapshot_pkl, "--seeds", "0", "--format", "glb", "--texture", "512",
                           "--out", tmp_path / "glb", *common)
    assert code == 0 and "512² texture" in out, err
    ply = trimesh.load(tmp_path / "ply" / "seed0000.ply", process=False)
    glb = next(iter(trimesh.load(tmp_path / "glb" / "seed0000.glb", process=False).geometry.values()))
    assert abs(len(ply.faces) - 1500) <= 15 and len(glb.faces) == len(ply.faces)
    dist, idx = cKDTree(ply.vertices).query(glb.vertices)
    assert dist.max() < 1e-6  # the same vertices (seams duplicate some in the GLB)
    texture = np.asarray(glb.visual.material.baseColorTexture.convert("RGB"))
    uv = np.asarray(glb.visual.uv)  # trimesh's v-up convention
    sampled = bilinear(texture, np.stack([uv[:, 0], 1 - uv[:, 1]], 1))
    ply_colours = np.asarray(ply.visual.vertex_colors)[idx, :3].astype(float)
    assert np.abs(sampled - ply_colours).mean() <= 2

    G = load_generator(snapshot_pkl, "cpu")
    save_latent(tmp_path / "latent.npz", SavedLatent(seed_ws(G, 0, psi=0.7), torch.zeros(25)))
    code, _, err = _main(capsys, "mesh", snapshot_pkl, "--latent", tmp_path / "latent.npz", "--format", "glb",
                         "--texture", "512", "--out", tmp_path / "inv", *common)
    assert code == 0, err
    assert (tmp_path / "inv" / "latent.glb").read_bytes() == (tmp_path / "glb" / "seed0000.glb").read_bytes()


@pytest.mark.parametrize("extra, message", [
    (["--texture", "0"], "error: argument --texture: must be between"),
    (["--texture", "100000"], "error: argument --texture: must be between"),
    (["--faces", "2"], "error: argument --faces: must be between"),
    (["--faces", "99999999"], "error: face count 99999999 is more than the mesh's"),
    (["--texture", "64", "--format", "ply"], "error: --texture needs --format glb or obj"),
])
def test_mesh_command_bad_texture_arguments_are_one_line(snapshot_pkl, tmp_path, capsys, extra, message):
    code, _, err = _main(capsys, "mesh", snapshot_pkl, "--seeds", "0", "--res", "48", "--out", tmp_path,
                         "--device", "cpu", *extra)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]  # no bars
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), err
    assert not list(tmp_path.iterdir())
