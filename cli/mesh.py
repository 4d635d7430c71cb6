"""`main.py mesh`: coloured or textured iso-surface meshes (PLY/OBJ/GLB) and density volumes per seed."""
from __future__ import annotations

import argparse

HELP = ("Export coloured or textured iso-surface meshes (PLY, OBJ or GLB) of the generator's density, "
        "one per seed.")
EXAMPLES = """examples:
  python main.py mesh ffhq512-128.pkl --seeds 0,3-5 --out meshes
  python main.py mesh ffhq512-128.pkl --seeds 7 --res 512 --format glb --color views --out meshes
  python main.py mesh run/network-snapshot-000400.pkl --seeds 0 --level 5 --volume npy --out shapes
  python main.py mesh ffhq512-128.pkl --seeds 0 --format glb --faces 50000 --texture 1024 --out assets3d
  python main.py mesh ffhq512-128.pkl --latent latent.npz --format obj --texture 2048 --texture-from views --out o

Files: DIR/seed0003.ply (vertex colours and normals; world coordinates, +y up, the face looks along +z;
--up z for Z-up tools such as Blender's PLY/OBJ import: then the face looks along -y) and with
--volume DIR/seed0003.npy / .mrc (raw density [x,y,z] over the box, level 10 is the surface).
GLB colours are stored linear, as glTF defines them; GLB is always +y up (importers convert it).
With --texture: a UV atlas and a SIZE² base-colour texture instead of vertex colours (GLB: embedded PNG,
sRGB as glTF defines it; OBJ: seed0003.obj + .mtl + .png beside it); PLY keeps vertex colours."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_source_arguments, float_in, int_in
    from core.decimation import MIN_FACES
    from core.uv_atlas import MAX_TEXTURE, MIN_TEXTURE
    add_source_arguments(p, "0,3-5", "DIR", neural_res=False)
    p.add_argument("--res", type=int_in(8, 1024), default=256,
                   help="grid points per axis (default 256; 512 fits in ~3 GB)")
    p.add_argument("--level", type=float_in(-1e6, 1e6), default=10.0,
                   help="iso-level on the raw density (default 10, as the original; 2-20 are reasonable)")
    p.add_argument("--format", choices=("ply", "obj", "glb"), default="ply", help="mesh file format (default ply)")
    p.add_argument("--color", choices=("decoder", "views", "none"), default="decoder",
                   help="vertex colours: decoder rgb at the vertices (default, fast), views = projected "
                        "super-resolved renderings (sharper, one render per view), none")
    p.add_argument("--up", choices=("y", "z"), default="y",
                   help="up axis of the written mesh: y (default, the model's world) or z (Blender, "
                        "3D printing); glb files are always y up")
    p.add_argument("--views", type=int_in(1, 9), default=7,
                   help="cameras for --color views and --texture-from views (1-9, default 7)")
    p.add_argument("--faces", type=int_in(MIN_FACES, 100_000_000), metavar="N",
                   help="decimate to about N faces (quadric edge collapse; a closed surface stays closed); "
                        "at most the mesh's own count (default: keep all)")
    p.add_argument("--texture", type=int_in(MIN_TEXTURE, MAX_TEXTURE), metavar="SIZE",
                   help=f"UV atlas and a SIZE x SIZE base-colour texture ({MIN_TEXTURE}-{MAX_TEXTURE}; "
                        "glb or obj), instead of vertex colours")
    p.add_argument("--texture-from", choices=("decoder", "views"), default="decoder",
                   help="texture source: decoder = radiance colour at the surface under each texel (default), "
                        "views = super-resolved renderings of --views cameras projected with a depth test")
    p.add_argument("--crop-border", action=argparse.BooleanOptionalAction, default=True,
                   help="cut a border of 30/256 of the box on every side, like the original (default on)")
    p.add_argument("--clean", action=argparse.BooleanOptionalAction, default=True,
                   help="fill closed cavities inside the object and drop dust specks (default on; "
                        "--no-clean meshes the raw density as is)")
    p.add_argument("--volume", choices=("npy", "mrc"), help="also save the full density volume "
                   "(evaluates every grid point: slower; mrc needs the mrcfile package)")


def run(args: argparse.Namespace) -> int:
    import sys

    import torch

    from cli.common import open_generator, read_source, writable_dir
    from core.errors import StudioError
    from core.images import seed_ws
    from core.mesh import MeshOptions, density_volume, extract_mesh, write_mesh, write_volume
    from core.progress import TqdmProgress

    seeds, latent = read_source(args)
    if args.texture is not None and args.format == "ply":
        raise ValueError("--texture needs --format glb or obj (PLY keeps vertex colours)")
    if args.format == "glb" and args.up != "y":
        raise ValueError("--up z: GLB files are +y up by the glTF spec (Blender's glTF import turns them "
                         "upright itself); use --format ply or obj for a z-up file")
    out = writable_dir(args.out)
    options = MeshOptions(resolution=args.res, level=args.level, crop_border=args.crop_border,
                          color=args.color, num_views=args.views, fov_deg=args.fov,
                          clean=args.clean, faces=args.faces, texture=args.texture,
                          texture_from=args.texture_from)
    G, latent_ws = open_generator(args, latent)
    written = 0
    for seed in seeds:
        name = "latent" if latent is not None else f"seed{seed:04d}"
        progress = TqdmProgress(name, unit="pt")
        try:
            ws = latent_ws if latent_ws is not None else seed_ws(G, seed, args.psi, args.cutoff, args.fov)
            with torch.no_grad():
                planes = G.planes(ws)
            volume = None
            if args.volume:
                volume = density_volume(G, planes, options, dense=True, progress=progress)
                path = write_volume(volume, out / f"{name}.{args.volume}", G.options.box_warp)
                print(f"wrote {path}")
            mesh = extract_mesh(G, planes, ws, options, progress, volume=volume)
        finally:
            progress.close()
        if len(mesh.faces) == 0:
            print(f"warning: seed {seed}: no surface at level {args.level:g}; try a lower --level",
                  file=sys.stderr)
            continue
        path = write_mesh(mesh, out / f"{name}.{args.format}", args.format, up=args.up)
        written += 1
        extra = f", {args.texture}² texture" if args.texture else ""
        print(f"wrote {path} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces{extra})")
    if written == 0:
        raise StudioError(f"no surface at level {args.level:g} for any seed; try a lower --level")
    return 0
