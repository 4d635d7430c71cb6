"""Small OpenGL 3.3 core helpers: shader programs from shaders/, textures, an offscreen target, a quad.

Every call here must run on the UI thread with the window's context current. Shader compile and link
failures raise StudioError carrying the driver's log, so a broken shader names its file and line.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

if os.environ.get("XDG_SESSION_TYPE") == "wayland" and "PYOPENGL_PLATFORM" not in os.environ:
    os.environ["PYOPENGL_PLATFORM"] = "x11"  # GLFW talks to XWayland; must precede `import OpenGL`

import numpy as np
import OpenGL.GL as gl

from core.errors import StudioError

SHADER_DIR = Path(__file__).resolve().parents[1] / "shaders"
_STAGES = {".vert": gl.GL_VERTEX_SHADER, ".frag": gl.GL_FRAGMENT_SHADER}


def _compile(path: Path) -> int:
    stage = _STAGES.get(path.suffix)
    if stage is None:
        raise StudioError(f"{path.name}: unknown shader stage (expected .vert or .frag)")
    shader = gl.glCreateShader(stage)
    gl.glShaderSource(shader, path.read_text())
    gl.glCompileShader(shader)
    if not gl.glGetShaderiv(shader, gl.GL_COMPILE_STATUS):
        log = gl.glGetShaderInfoLog(shader).decode(errors="replace").strip()
        gl.glDeleteShader(shader)
        raise StudioError(f"shader {path.name} does not compile: {log}")
    return shader


class Program:
    """A linked shader program with cached uniform locations."""

    def __init__(self, *names: str, shader_dir: Path = SHADER_DIR):
        shaders = [_compile(shader_dir / n) for n in names]
        self.id = gl.glCreateProgram()
        for s in shaders:
            gl.glAttachShader(self.id, s)
        gl.glLinkProgram(self.id)
        for s in shaders:
            gl.glDetachShader(self.id, s)
            gl.glDeleteShader(s)
        if not gl.glGetProgramiv(self.id, gl.GL_LINK_STATUS):
            log = gl.glGetProgramInfoLog(self.id).decode(errors="replace").strip()
            raise StudioError(f"shaders {' + '.join(names)} do not link: {log}")
        self.names = names
        self._locations: dict[str, int] = {}

    def use(self) -> None:
        gl.glUseProgram(self.id)

    def _loc(self, name: str) -> int:
        if name not in self._locations:
            self._locations[name] = gl.glGetUniformLocation(self.id, name)
        return self._locations[name]

    def set(self, name: str, value) -> None:
        """Set a uniform of the bound program: int -> int/sampler, float or 2/3-float sequence -> vec."""
        loc = self._loc(name)
        if isinstance(value, (bool, int, np.integer)):
            gl.glUniform1i(loc, int(value))
        elif isinstance(value, (float, np.floating)):
            gl.glUniform1f(loc, float(value))
        elif len(value) == 2:
            gl.glUniform2f(loc, *map(float, value))
        elif len(value) == 3:
            gl.glUniform3f(loc, *map(float, value))
        else:
            raise ValueError(f"uniform {name}: unsupported value {value!r}")

    def delete(self) -> None:
        gl.glDeleteProgram(self.id)


_FORMATS = {  # (channels, dtype) -> (internal format, format, type)
    (1, np.uint8): (gl.GL_R8, gl.GL_RED, gl.GL_UNSIGNED_BYTE),
    (3, np.uint8): (gl.GL_RGB8, gl.GL_RGB, gl.GL_UNSIGNED_BYTE),
    (4, np.uint8): (gl.GL_RGBA8, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE),
    (1, np.float32): (gl.GL_R32F, gl.GL_RED, gl.GL_FLOAT),
    (3, np.float32): (gl.GL_RGB32F, gl.GL_RGB, gl.GL_FLOAT),
}


class Texture:
    """A 2-D texture re-allocated only when the uploaded array's shape or dtype changes."""

    def __init__(self, linear: bool = True):
        self.id = int(gl.glGenTextures(1))
        self.shape: tuple[int, ...] = ()
        self.dtype = None
        self._filter = gl.GL_LINEAR if linear else gl.GL_NEAREST

    def upload(self, array: np.ndarray) -> None:
        """Upload an [H, W] or [H, W, C] uint8/float32 array (row 0 = top of the image)."""
        a = np.ascontiguousarray(array if array.ndim == 3 else array[..., None])
        key = (a.shape[2], a.dtype.type)
        if key not in _FORMATS:
            raise ValueError(f"texture upload: unsupported array {a.shape} {a.dtype}")
        internal, fmt, typ = _FORMATS[key]
        h, w = a.shape[:2]
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)
        if a.shape != self.shape or a.dtype != self.dtype:
            gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, internal, w, h, 0, fmt, typ, a)
            for p in (gl.GL_TEXTURE_MIN_FILTER, gl.GL_TEXTURE_MAG_FILTER):
                gl.glTexParameteri(gl.GL_TEXTURE_2D, p, self._filter)
            for p in (gl.GL_TEXTURE_WRAP_S, gl.GL_TEXTURE_WRAP_T):
                gl.glTexParameteri(gl.GL_TEXTURE_2D, p, gl.GL_CLAMP_TO_EDGE)
            self.shape, self.dtype = a.shape, a.dtype
        else:
            gl.glTexSubImage2D(gl.GL_TEXTURE_2D, 0, 0, 0, w, h, fmt, typ, a)

    def allocate(self, width: int, height: int) -> None:
        """Reserve RGBA8 storage (for render targets and the CUDA interop path)."""
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)
        gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_RGBA8, width, height, 0, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE, None)
        for p in (gl.GL_TEXTURE_MIN_FILTER, gl.GL_TEXTURE_MAG_FILTER):
            gl.glTexParameteri(gl.GL_TEXTURE_2D, p, self._filter)
        self.shape, self.dtype = (height, width, 4), np.dtype(np.uint8)

    def bind(self, unit: int) -> None:
        gl.glActiveTexture(gl.GL_TEXTURE0 + unit)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.id)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), (0, 0) before the first upload."""
        return (self.shape[1], self.shape[0]) if self.shape else (0, 0)

    def delete(self) -> None:
        gl.glDeleteTextures([self.id])


class RenderTarget:
    """An offscreen framebuffer with one RGBA8 colour texture that ImGui can show with imgui.image."""

    def __init__(self):
        self.texture = Texture(linear=True)
        self.fbo = int(gl.glGenFramebuffers(1))
        self.width = self.height = 0

    def resize(self, width: int, height: int) -> None:
        width, height = max(1, int(width)), max(1, int(height))
        if (width, height) == (self.width, self.height):
            return
        self.texture.allocate(width, height)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        gl.glFramebufferTexture2D(gl.GL_FRAMEBUFFER, gl.GL_COLOR_ATTACHMENT0, gl.GL_TEXTURE_2D,
                                  self.texture.id, 0)
        status = gl.glCheckFramebufferStatus(gl.GL_FRAMEBUFFER)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
        if status != gl.GL_FRAMEBUFFER_COMPLETE:
            raise StudioError(f"offscreen framebuffer {width}x{height} is incomplete (status {status:#x})")
        self.width, self.height = width, height

    def __enter__(self) -> RenderTarget:
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        gl.glViewport(0, 0, self.width, self.height)
        return self

    def __exit__(self, *exc) -> None:
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)

    def read(self) -> np.ndarray:
        """The target's pixels as [H, W, 3] uint8, row 0 at the top."""
        with self:
            return read_pixels(0, 0, self.width, self.height)

    def delete(self) -> None:
        gl.glDeleteFramebuffers(1, [self.fbo])
        self.texture.delete()


class Quad:
    """Draws the full-screen triangle strip of quad.vert (core profile needs a bound VAO)."""

    def __init__(self):
        self.vao = int(gl.glGenVertexArrays(1))

    def draw(self) -> None:
        gl.glBindVertexArray(self.vao)
        gl.glDrawArrays(gl.GL_TRIANGLE_STRIP, 0, 4)
        gl.glBindVertexArray(0)

    def delete(self) -> None:
        gl.glDeleteVertexArrays(1, [self.vao])


def read_pixels(x: int, y: int, width: int, height: int) -> np.ndarray:
    """glReadPixels of the bound read framebuffer as [H, W, 3] uint8 with row 0 at the top."""
    gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
    data = gl.glReadPixels(x, y, width, height, gl.GL_RGB, gl.GL_UNSIGNED_BYTE)
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    return np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1].copy()


def shader_files() -> list[Path]:
    """Every GLSL file in shaders/ (the shader test compiles each one)."""
    return sorted(p for p in SHADER_DIR.iterdir() if p.suffix in _STAGES)


def texture_ref(texture_id: int):
    """ImGui's texture handle for a GL texture id (imgui-bundle 1.92+ wants ImTextureRef, not an int)."""
    from imgui_bundle import imgui
    return imgui.ImTextureRef(ctypes.c_uint64(texture_id).value)


def show_target(target: RenderTarget, width: float, height: float,
                tint: tuple[float, float, float, float] | None = None) -> None:
    """imgui.image of a render target, the right way up.

    A target holds GL rows (row 0 = bottom of the picture) while ImGui maps uv (0, 0) to the top-left
    corner, so the v axis is swapped here. Uploaded Textures (row 0 = top) are shown with plain uvs.
    """
    from imgui_bundle import imgui
    ref, size = texture_ref(target.texture.id), imgui.ImVec2(width, height)
    uv0, uv1 = imgui.ImVec2(0, 1), imgui.ImVec2(1, 0)
    if tint is None:
        imgui.image(ref, size, uv0, uv1)
    else:
        imgui.image_with_bg(ref, size, uv0, uv1, imgui.ImVec4(0, 0, 0, 0), imgui.ImVec4(*tint))
