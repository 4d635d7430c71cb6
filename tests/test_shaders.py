"""Every GLSL file in shaders/ compiles and links in a real (Xvfb, llvmpipe) OpenGL 3.3 core context,
and the two fragment shaders compute what they claim (read back with glReadPixels)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def gl_context(display):
    """A hidden 3.3 core GLFW window on $DISPLAY (a private Xvfb server when there is none)."""
    import glfw
    assert glfw.init(), "GLFW could not initialise on the X display"
    glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
    glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
    glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
    glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
    glfw.window_hint(glfw.VISIBLE, False)
    window = glfw.create_window(32, 32, "shader test", None, None)
    glfw.make_context_current(window)
    yield window
    glfw.destroy_window(window)
    glfw.terminate()


def _draw(program, target, quad):
    from OpenGL import GL as gl
    with target:
        gl.glClearColor(1, 0, 1, 1)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT)
        quad.draw()
    return target.read()


def _program(frag: str, **uniforms):
    """The quad vertex shader + `frag`, in use, with the given uniforms set."""
    from app.gl import Program
    prog = Program("quad.vert", frag)
    prog.use()
    for name, value in uniforms.items():
        prog.set(name, value)
    return prog


def test_every_shader_compiles_and_links(gl_context):
    from app.gl import Program, shader_files
    files = shader_files()
    assert {f.name for f in files} >= {"quad.vert", "image.frag", "colormap.frag"}
    for frag in (f for f in files if f.suffix == ".frag"):
        Program("quad.vert", frag.name).delete()


def test_broken_shader_reports_the_log(gl_context, tmp_path):
    from app.gl import SHADER_DIR, Program
    from core.errors import StudioError
    (tmp_path / "bad.frag").write_text("#version 330 core\nvoid main() { undefined_call(); }\n")
    (tmp_path / "quad.vert").write_text((SHADER_DIR / "quad.vert").read_text())
    with pytest.raises(StudioError, match="bad.frag does not compile"):
        Program("quad.vert", "bad.frag", shader_dir=tmp_path)


def test_colormap_grey_ramp_and_invert(gl_context):
    from app.gl import Quad, RenderTarget, Texture
    ramp = np.tile(np.linspace(0.0, 1.0, 16, dtype=np.float32), (8, 1))   # [8, 16], left dark
    tex, target, quad = Texture(linear=False), RenderTarget(), Quad()
    tex.upload(ramp)
    target.resize(16, 8)
    tex.bind(0)
    prog = _program("colormap.frag", u_scalar=0, u_range=(0.0, 1.0), u_colormap=0, u_invert=0)
    row = _draw(prog, target, quad)[4, :, 0].astype(int)
    assert row[0] <= 1 and row[-1] >= 254 and np.all(np.diff(row) > 0)
    prog.set("u_invert", 1)
    inverted = _draw(prog, target, quad)[4, :, 0].astype(int)
    np.testing.assert_allclose(inverted, 255 - row, atol=1)
    prog.set("u_invert", 0)
    prog.set("u_colormap", 1)                                            # turbo: blue at 0.2, red at 0.93
    turbo = _draw(prog, target, quad)[4].astype(int)
    assert turbo[3, 2] > turbo[3, 0] + 100 and turbo[14, 0] > turbo[14, 2] + 100


def test_image_split_shows_compare_left_of_divider(gl_context):
    from app.gl import Quad, RenderTarget, Texture
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((4, 4, 3), np.uint8)
    blue[..., 2] = 255
    a, b, target, quad = Texture(), Texture(), RenderTarget(), Quad()
    a.upload(red)
    b.upload(blue)
    target.resize(20, 10)
    a.bind(0)
    b.bind(1)
    prog = _program("image.frag", u_image=0, u_compare=1, u_background=(0.0, 0.0, 0.0), u_divider=0.0,
                    u_split=0.0)
    whole = _draw(prog, target, quad)
    assert (whole[..., 0] == 255).all() and (whole[..., 2] == 0).all()
    prog.set("u_split", 0.5)
    split = _draw(prog, target, quad)
    assert (split[:, :10, 2] == 255).all() and (split[:, 10:, 0] == 255).all()


def test_image_background_fills_where_opacity_is_zero(gl_context):
    from app.gl import Quad, RenderTarget, Texture
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, :, :] = (200, 100, 50, 255)                     # top row opaque, bottom row empty
    tex, target, quad = Texture(linear=False), RenderTarget(), Quad()
    tex.upload(rgba)
    target.resize(2, 2)
    tex.bind(0)
    prog = _program("image.frag", u_image=0, u_compare=0, u_split=0.0, u_background=(0.0, 1.0, 0.0))
    pixels = _draw(prog, target, quad).astype(int)
    np.testing.assert_allclose(pixels[0], [[200, 100, 50]] * 2, atol=1)
    np.testing.assert_allclose(pixels[1], [[0, 255, 0]] * 2, atol=1)
