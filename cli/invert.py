"""`main.py invert`: one image -> latent (W / W+ projection) and optionally a pivot-tuned generator."""
from __future__ import annotations

import argparse

HELP = "Invert one image into the generator: its latent (W or W+), camera, and optionally tuned weights (PTI)."
EXAMPLES = """examples:
  python main.py invert photo.png --network model.ckpt --yaw 25 --out inv
  python main.py invert photo.png --network model.ckpt --out inv --space w+ --tune 150
  python main.py invert img00000042.png --network ffhq512-128.pkl --camera data/dataset.json:img00000042.png --out inv
  python main.py render model.ckpt --latent inv/latent.npz --views 5 --out views
  python main.py mesh inv/tuned.ckpt --latent inv/latent.npz --out mesh

The image is centre-cropped to a square and resized to the model's resolution; transparency is
composited on the model's background. A casual photo of an object on a plain backdrop: --frame 0.64
(the backdrop becomes the model's background, the object is centred and scaled to the training framing).
--yaw/--pitch mean what they mean for `render` (degrees from
the frontal camera, pitch > 0 lower); --camera takes a 25-number label (JSON list, .npy, or
dataset.json:FILENAME); with neither, yaw and pitch are estimated (BENCHMARKS.md: about a minute on a
2-core CPU; on a symmetric object a symmetric equivalent of the view): a bank of random latents rendered
at a grid of views inside the model's training camera range (raw images at 16x16, colour plus a
silhouette cue: the model's opacity against the image's non-background pixels), the best 8 scored by a
short W fit with the camera held fixed, then a pattern search around the best, many views in one batch,
and last the elevation alone by longer fits (they tell which side of the horizon a view is from).
Writes DIR/latent.npz (ws, camera, settings, noise maps), DIR/compare.png (input | reconstruction |
three unseen views) and with --tune DIR/tuned.ckpt. Ctrl-C stops early and keeps the best result."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_device_argument, float_in, int_in
    p.add_argument("image", help="the image to invert (any format PIL reads)")
    p.add_argument("--network", required=True, help="network pickle, .ckpt file or training run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--yaw", type=float_in(-180, 180), help="camera yaw in degrees, as for render")
    p.add_argument("--pitch", type=float_in(-85, 85), help="camera pitch in degrees, > 0 = lower")
    p.add_argument("--camera", metavar="FILE", help="25-number camera label: JSON list, .npy or dataset.json:NAME")
    p.add_argument("--fov", type=float_in(0, 179, open_lo=True),
                   help="field of view in degrees with --yaw/--pitch or for the estimated camera "
                        "(default: the checkpoint's)")
    p.add_argument("--steps", type=int_in(1, 100000), default=300, help="projection steps (default 300)")
    p.add_argument("--space", choices=("w", "w+"), default="w",
                   help="w: one w for all layers (default); w+: W first, then one w per layer")
    p.add_argument("--tune", type=int_in(0, 100000), default=0, metavar="STEPS",
                   help="pivotal tuning steps after projection (default 0 = none; 150 recommended with --space w+: "
                        "all synthesis weights at rate 3e-3 ramped down over the last 30%%, locality weight 0.02, "
                        "unseen-view anchor weight 0.2, the weights that fit best kept; about half a second a step "
                        "for the default model on a CPU core); writes tuned.ckpt")
    p.add_argument("--symmetry", type=float_in(0, 1000), metavar="WEIGHT",
                   help="mirror prior: the object is symmetric about the model's x=0 plane (faces, the default "
                        "model's toys), so from the mirrored camera its silhouette is the image's, flipped; "
                        "its weight in tuning (default 0.5; 0 for asymmetric objects or models)")
    p.add_argument("--starts", type=int_in(0, 10000), default=0,
                   help="random latents tried besides the mean w when the camera is given; projection starts "
                        "from the one that best matches the image (default 0 = the mean w; try 16 when the "
                        "result is the wrong kind of object)")
    p.add_argument("--refine-steps", type=int_in(0, 10000), default=25,
                   help="estimated camera: steps of each fixed-camera fit that scores a view in the fine search "
                        "(default 25; 0 = the best coarse grid view as is)")
    p.add_argument("--frame", type=float_in(0.05, 1.0), metavar="FRACTION",
                   help="for a photo on a plain backdrop: replace the backdrop (the border's median colour) "
                        "with the model's background, centre the object and scale its larger side to FRACTION "
                        "of the frame (0.64: the default model's toys, median of their training framing)")
    p.add_argument("--vgg", metavar="FILE", help="local VGG16 weights (torchvision state_dict) for the "
                   "perceptual loss instead of the checkpoint's discriminator")
    p.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0, help="random seed (default 0)")
    add_device_argument(p)


def _novel_views() -> list[tuple[str, float, float]]:
    import math
    return [("yaw -35", -math.radians(35), 0.0), ("yaw +35", math.radians(35), 0.0),
            ("from above", 0.0, -math.radians(25))]


def run(args: argparse.Namespace) -> int:
    import math
    import signal
    import sys

    import torch

    from cli.common import pick_device, writable_dir
    from core import interrupts
    from core.cameras import frontal_label
    from core.checkpoint import load_generator, save_checkpoint
    from core.errors import StudioError
    from core.imaging import contact_sheet, save_png, to_uint8
    from core.latents import SavedLatent, read_camera, save_latent
    from core.progress import TqdmProgress
    from training.image_inversion import invert_image, perceptual_loss, prepare_target
    from training.inversion import InversionOptions, OrbitLabel

    camera_given = args.yaw is not None or args.pitch is not None
    if camera_given and args.camera:
        raise StudioError("give either --yaw/--pitch or --camera, not both")
    if args.camera and args.fov is not None:
        raise StudioError("--fov does not apply with --camera (the label holds the intrinsics)")
    label = read_camera(args.camera) if args.camera else None
    out = writable_dir(args.out)
    device = pick_device(args.device)
    G = load_generator(args.network, device)
    target = prepare_target(G, args.image, args.frame)
    print(f"image: {target.prepared}")
    perceptual = perceptual_loss(args.network, device, args.vgg)
    print(f"loss: {perceptual[1]}")
    if camera_given:
        label = frontal_label(G.options, args.fov, device, yaw=math.radians(args.yaw or 0.0),
                              pitch=math.radians(args.pitch or 0.0))[0]
    opts = InversionOptions(steps=args.steps, space=args.space, tune_steps=args.tune,
                            refine_steps=args.refine_steps, starts=args.starts, seed=args.seed,
                            **({} if args.symmetry is None else {"symmetry_weight": args.symmetry}))
    progress = TqdmProgress("invert", unit="step")
    try:
        inverted = invert_image(G, target, opts, label, perceptual, progress, network=args.network,
                                fov_deg=args.fov)
    finally:
        progress.close()
    result, G_final = inverted.result, inverted.G
    how = inverted.settings["camera"]
    print(f"camera ({how}): yaw {math.degrees(result.yaw):+.1f} deg, pitch {math.degrees(result.pitch):+.1f} deg, "
          f"fov {result.fov_deg:.2f} deg; final image loss {result.loss:.5f}")
    latent_path = save_latent(out / "latent.npz", SavedLatent(result.ws, result.camera, inverted.settings,
                                                              result.noise))
    written = [latent_path]
    if result.G is not None:
        save_checkpoint(out / "tuned.ckpt", result.G)
        written.append(out / "tuned.ckpt")
    cam = OrbitLabel.from_label(result.camera, G.options.avg_camera_pivot).to(device)
    frames = [to_uint8(target.image[0])]
    with torch.no_grad():
        planes = G_final.planes(result.ws.to(device))
        for dy, dp in [(0.0, 0.0)] + [(v[1], v[2]) for v in _novel_views()]:
            frames.append(to_uint8(G_final.render_planes(planes, result.ws.to(device), cam(dy, dp))["image"][0]))
    labels = ["input", "reconstruction"] + [v[0] for v in _novel_views()]
    written.append(save_png(out / "compare.png", contact_sheet(frames, len(frames), labels)))
    print("wrote " + ", ".join(str(p) for p in written))
    if result.interrupted:
        print(f"interrupted: kept the best result so far ({len(result.history)} steps run)", file=sys.stderr)
        return interrupts.exit_code(interrupts.received() or signal.SIGINT)
    return 0
