"""Views baking against the studio's picture: the textured mesh drawn by OpenGL (Xvfb, llvmpipe) at a
view used for baking is closer to the super-resolved rendering of that view with a views-baked
texture than with a decoder-baked one."""
from __future__ import annotations

import pytest
import torch

from core import mesh as M
from core.images import seed_ws
from core.texture_bake import bake_texture


@pytest.fixture()
def gl_window(display):
    from scripts.texture_views_psnr import hidden_context
    window = hidden_context()
    yield window
    window.close()


def test_views_texture_looks_like_the_renderings(small_G, gl_window):
    from scripts.texture_views_psnr import BAKED, UNBAKED, compare
    ws = seed_ws(small_G, 0, psi=0.7)
    with torch.no_grad():
        planes = small_G.planes(ws)
    mesh = M.extract_mesh(small_G, planes, ws, M.MeshOptions(resolution=64, faces=1000, texture=128))
    assert M.VIEW_OFFSETS[1] == BAKED and UNBAKED not in M.VIEW_OFFSETS
    textures = {"decoder": mesh.texture, "views": bake_texture(small_G, planes, mesh, 128, "views", ws, 2)}
    scores, sheet = compare(small_G, planes, ws, mesh, textures, {"baked": BAKED, "unbaked": UNBAKED})
    assert sheet.shape[0] == 2 * sheet.shape[1] // 3  # two views, three columns
    for view in ("baked", "unbaked"):
        (views, views_interior), (decoder, decoder_interior) = scores[(view, "views")], scores[(view, "decoder")]
        assert views > decoder + 1.0 and views_interior > decoder_interior + 1.0, scores
