"""How much each held-out toy's image changes when the camera turns: the dataset's tracer renders the input
view and the same toy turned in yaw (both ways, the larger change reported) or moved in elevation; PSNR
against the input view. A turn whose image is closer to the input than an inversion reproduces it cannot
be told from the true view by fitting the image (BENCHMARKS.md, the camera estimate's yaw).

    PYTHONPATH=. python -m scripts.heldout_turns --objects 12
"""
from __future__ import annotations

import argparse

from scripts.bench_invert import psnr
from training.heldout_toys import render_views, toy_scene

TURNS = (5, 10, 30, 90, 180)
ELEVATION_STEPS = (-5, 5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=12)
    p.add_argument("--first", type=int, default=0)
    args = p.parse_args()
    print("| object (elevation) | " + " | ".join(f"yaw ±{t}°" for t in TURNS) + " | "
          + " | ".join(f"elevation {d:+d}°" for d in ELEVATION_STEPS) + " |")
    print("|---|" + "---|" * (len(TURNS) + len(ELEVATION_STEPS)))
    for i in range(args.first, args.first + args.objects):
        kind, _, scene, yaw, elev = toy_scene(i)
        views = ([(yaw, elev)] + [(yaw + s * t, elev) for t in TURNS for s in (1, -1)]
                 + [(yaw, elev + d) for d in ELEVATION_STEPS])
        images = [v.image for v in render_views(scene, views)]
        p = [psnr(images[0], im) for im in images[1:]]
        turned = [min(p[2 * k], p[2 * k + 1]) for k in range(len(TURNS))]
        print(f"| {kind}{i:02d} ({elev:+.0f}°) | " + " | ".join(f"{v:.1f}" for v in turned + p[2 * len(TURNS):])
              + " |", flush=True)


if __name__ == "__main__":
    main()
