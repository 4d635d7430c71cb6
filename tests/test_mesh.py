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


@pytest.mark.parametrize("fmt", M.FORMATS)
def test_mesh_file_loads_back_with_vertex_colours(small_G, latent, tmp_path, fmt):
    import trimesh
    ws, planes = latent
    mesh = M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=64))
    assert mesh.colors.shape == (len(mesh.vertices), 3) and mesh.colors.dtype == np.uint8
    assert mesh.colors.std(axis=0).max() > 2  # colours vary over the surface
    path = M.write_mesh(mesh, tmp_path / f"seed.{fmt}")
    back = trimesh.load(path, force="mesh", process=False)
    assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.visual.vertex_colors)[:, :3], mesh.colors)
    assert back.volume > 0  # faces wind outwards
    assert [p.name for p in tmp_path.iterdir()] == [f"seed.{fmt}"]  # no temporary left behind


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
        import mrcfile  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="mrcfile"):
            M.write_volume(vol, tmp_path / "v.mrc")
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
