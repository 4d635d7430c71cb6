"""How close a textured mesh looks to the studio: PSNR of the mesh rasterised by OpenGL against the
super-resolved rendering of the same camera, for a texture baked from the decoder and one baked from
views (`mesh --texture-from views`), at views used for baking and at views that were not.

    xvfb-run -a python -m scripts.texture_views_psnr --network assets/default_model.ckpt --seeds 0-3

The mesh is drawn unlit (base colour only) with OpenGL 3.3 (shaders/textured_mesh.*, mipmapped
texture, depth test) into an offscreen framebuffer of the SR image's size; PSNR is taken over the
pixels that the mesh covers and that the rendering shows as object (opacity >= 0.5, upsampled from the
neural resolution), so that the two silhouettes' disagreement does not swamp the colours, and over
that mask's interior (eroded by INTERIOR pixels), where the colours alone differ. Prints a Markdown
table and saves OUT/seedN.png (rows: views; columns: SR image, decoder texture, views texture).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

BAKED = (0.5, 0.0)
"""(yaw, pitch) offsets from frontal: one of the views baking uses (core.view_projection.VIEW_OFFSETS)."""
UNBAKED = (0.25, 0.2)
"""Between baked views, at a pitch none of them has."""
INTERIOR = 2
"""Pixels taken off the compared mask's border for the interior score."""


class MeshRenderer:
    """Draws one textured mesh with an EG3D camera into an offscreen RGBA8 + depth framebuffer.

    Needs a current OpenGL 3.3 core context (see `hidden_context`).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, size: int):
        import OpenGL.GL as gl

        from app.gl import Program
        self.gl, self.size = gl, size
        self.program = Program("textured_mesh.vert", "textured_mesh.frag")
        self.vao = int(gl.glGenVertexArrays(1))
        gl.glBindVertexArray(self.vao)
        self.buffers = [int(b) for b in gl.glGenBuffers(3)]
        for loc, (buffer, data) in enumerate(zip(self.buffers, (vertices, uvs))):
            gl.glBindBuffer(gl.GL_ARRAY_BUFFER, buffer)
            gl.glBufferData(gl.GL_ARRAY_BUFFER, np.ascontiguousarray(data, np.float32), gl.GL_STATIC_DRAW)
            gl.glVertexAttribPointer(loc, data.shape[1], gl.GL_FLOAT, gl.GL_FALSE, 0, None)
            gl.glEnableVertexAttribArray(loc)
        gl.glBindBuffer(gl.GL_ELEMENT_ARRAY_BUFFER, self.buffers[2])
        gl.glBufferData(gl.GL_ELEMENT_ARRAY_BUFFER, np.ascontiguousarray(faces, np.uint32), gl.GL_STATIC_DRAW)
        gl.glBindVertexArray(0)
        self.count = faces.size
        self.texture = int(gl.glGenTextures(1))
        self.fbo = int(gl.glGenFramebuffers(1))
        self.colour, self.depth = int(gl.glGenRenderbuffers(1)), int(gl.glGenRenderbuffers(1))
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        for rb, fmt, attachment in ((self.colour, gl.GL_RGBA8, gl.GL_COLOR_ATTACHMENT0),
                                    (self.depth, gl.GL_DEPTH_COMPONENT24, gl.GL_DEPTH_ATTACHMENT)):
            gl.glBindRenderbuffer(gl.GL_RENDERBUFFER, rb)
            gl.glRenderbufferStorage(gl.GL_RENDERBUFFER, fmt, size, size)
            gl.glFramebufferRenderbuffer(gl.GL_FRAMEBUFFER, attachment, gl.GL_RENDERBUFFER, rb)
        assert gl.glCheckFramebufferStatus(gl.GL_FRAMEBUFFER) == gl.GL_FRAMEBUFFER_COMPLETE
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)

    def set_texture(self, texture: np.ndarray) -> None:
        """Upload an sRGB uint8 [S,S,3] texture (row 0 first) with mipmaps and trilinear filtering."""
        gl = self.gl
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.texture)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)
        s = texture.shape[0]
        gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, gl.GL_RGB8, s, s, 0, gl.GL_RGB, gl.GL_UNSIGNED_BYTE,
                        np.ascontiguousarray(texture))
        gl.glGenerateMipmap(gl.GL_TEXTURE_2D)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER, gl.GL_LINEAR_MIPMAP_LINEAR)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, gl.GL_LINEAR)
        for p in (gl.GL_TEXTURE_WRAP_S, gl.GL_TEXTURE_WRAP_T):
            gl.glTexParameteri(gl.GL_TEXTURE_2D, p, gl.GL_CLAMP_TO_EDGE)

    def draw(self, label: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Camera label [1,25] -> (image [S,S,3] uint8, covered [S,S] bool), row 0 at the top."""
        from app.gl import read_pixels
        gl = self.gl
        cam2world, k = label[0, :16].view(4, 4).double(), label[0, 16:].view(3, 3).double()
        if abs(float(k[0, 1])) > 1e-9:
            raise ValueError("cameras with skew are not supported")
        rot = cam2world[:3, :3].T  # world -> camera
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, self.fbo)
        gl.glViewport(0, 0, self.size, self.size)
        gl.glClearColor(0, 0, 0, 0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT | gl.GL_DEPTH_BUFFER_BIT)
        gl.glEnable(gl.GL_DEPTH_TEST)
        self.program.use()
        for i in range(3):
            self.program.set(f"u_rot{i}", rot[i].tolist())
        self.program.set("u_origin", cam2world[:3, 3].tolist())
        self.program.set("u_focal", (float(k[0, 0]), float(k[1, 1])))
        self.program.set("u_centre", (float(k[0, 2]), float(k[1, 2])))
        self.program.set("u_near_far", (0.1, 20.0))
        self.program.set("u_texture", 0)
        gl.glActiveTexture(gl.GL_TEXTURE0)
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.texture)
        gl.glBindVertexArray(self.vao)
        gl.glDrawElements(gl.GL_TRIANGLES, self.count, gl.GL_UNSIGNED_INT, None)
        gl.glBindVertexArray(0)
        image = read_pixels(0, 0, self.size, self.size)
        gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
        depth = gl.glReadPixels(0, 0, self.size, self.size, gl.GL_DEPTH_COMPONENT, gl.GL_FLOAT)
        depth = np.frombuffer(depth, np.float32).reshape(self.size, self.size)[::-1]
        gl.glDisable(gl.GL_DEPTH_TEST)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, 0)
        return image, depth < 1.0


def hidden_context():
    """The studio's window code, hidden: an OpenGL 3.3 core context made current (needs $DISPLAY, e.g.
    under xvfb-run) -> the app.window.Window (close() it when done)."""
    from app.window import Window
    return Window("textured mesh", (16, 16), None, visible=False)


def compare(G, planes: torch.Tensor, ws: torch.Tensor, mesh, textures: dict[str, np.ndarray],
            views: dict[str, tuple[float, float]]) -> tuple[dict[tuple[str, str], tuple[float, float]], np.ndarray]:
    """PSNR {(view name, texture name): (dB over the mask, dB over its interior)} of the GL-drawn mesh
    against the SR image at each view, and a contact sheet (rows: views; columns: SR image, textures)."""
    from scipy import ndimage

    from core.cameras import OrbitCamera
    from core.imaging import to_uint8
    from scripts.bench_invert import psnr
    rows, scores = [], {}
    renderer = None
    for view, (yaw, pitch) in views.items():
        label = OrbitCamera.from_options(G.options, None, yaw, pitch).label(planes.device)
        with torch.no_grad():
            out = G.render_planes(planes, ws, label)
        sr = to_uint8(out["image"][0])
        opacity = torch.nn.functional.interpolate(out["image_opacity"].float(), size=sr.shape[:2], mode="bilinear",
                                                  align_corners=False)[0, 0].cpu().numpy()
        if renderer is None:
            renderer = MeshRenderer(mesh.vertices, mesh.faces, mesh.uvs, sr.shape[0])
        row = [sr]
        for name, texture in textures.items():
            renderer.set_texture(texture)
            image, covered = renderer.draw(label)
            mask = covered & (opacity >= 0.5)
            interior = ndimage.binary_erosion(mask, iterations=INTERIOR)
            scores[(view, name)] = (psnr(image[mask], sr[mask]), psnr(image[interior], sr[interior]))
            row.append(image)
        rows.append(np.concatenate(row, axis=1))
    return scores, np.concatenate(rows, axis=0)


def main() -> None:
    from PIL import Image

    from core.checkpoint import load_generator
    from core.images import seed_ws
    from core.latents import parse_seeds
    from core.mesh import MeshOptions, extract_mesh
    from core.texture_bake import bake_texture
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--network", default=str(Path(__file__).resolve().parents[1] / "assets" / "default_model.ckpt"))
    p.add_argument("--seeds", default="0-3")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--faces", type=int, default=50_000)
    p.add_argument("--texture", type=int, default=1024)
    p.add_argument("--views", type=int, default=7, help="cameras for the views texture")
    p.add_argument("--out", type=Path, default=Path("texture_psnr"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    G = load_generator(args.network, args.device)
    hidden_context()
    views = {"baked (yaw 0.5)": BAKED, "unbaked (yaw 0.25, pitch 0.2)": UNBAKED}
    print("| seed | view | decoder texture dB (interior) | views texture dB (interior) |\n|---|---|---|---|")
    for seed in parse_seeds(args.seeds):
        ws = seed_ws(G, seed, 0.7)
        with torch.no_grad():
            planes = G.planes(ws)
        mesh = extract_mesh(G, planes, ws, MeshOptions(resolution=args.res, faces=args.faces, texture=args.texture))
        textures = {"decoder": mesh.texture,
                    "views": bake_texture(G, planes, mesh, args.texture, "views", ws, args.views)}
        scores, sheet = compare(G, planes, ws, mesh, textures, views)
        Image.fromarray(sheet).save(args.out / f"seed{seed}.png")
        for view in views:
            (d, di), (v, vi) = scores[(view, "decoder")], scores[(view, "views")]
            print(f"| {seed} | {view} | {d:.2f} ({di:.2f}) | {v:.2f} ({vi:.2f}) |")


if __name__ == "__main__":
    main()
