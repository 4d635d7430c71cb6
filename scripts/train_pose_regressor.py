"""Train the pose regressor that ships for a checkpoint (assets/pose_regressor.pt for the default model).

Training views from the model's pose prior: `--generator N` of the checkpoint's own samples and, for a
model of the toys dataset, `--tracer N` new toys rendered by the dataset's tracer (seeds that overlap
neither a dataset's nor the held-out toys'). The file records the checkpoint's weight hash, so it is
used for that model only (training.pose_training.regressor_for). It then reports the regressor's own
accuracy (before any refinement) on the 12 held-out toys.

    python -m scripts.train_pose_regressor --tracer 4000 --generator 4000 --epochs 30
"""
from __future__ import annotations

import argparse
import math
import time


def main() -> None:
    import torch

    import core  # noqa: F401  (process settings before torch work)
    from core.checkpoint import load_generator
    from training.camera_estimate import pitch_to_elevation
    from training.heldout_toys import heldout_toys
    from training.orbit_label import OrbitLabel
    from training.pose_regressor import pose_hypotheses
    from training.pose_training import (
        ASSET,
        generator_views,
        save_pose_net,
        tracer_views,
        train_pose_net,
        weights_hash,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="assets/default_model.ckpt")
    p.add_argument("--tracer", type=int, default=4000, help="tracer views (toys models only; 0 = none)")
    p.add_argument("--tracer-resolution", type=int, default=48, help="tracer rendering size before the 32² input")
    p.add_argument("--generator", type=int, default=4000, help="views of the checkpoint's own samples")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ASSET))
    args = p.parse_args()
    G = load_generator(args.network, "cpu")
    parts = []
    t0 = time.perf_counter()
    if args.tracer:
        parts.append(tracer_views(args.tracer, args.seed, args.tracer_resolution))
    if args.generator:
        parts.append(generator_views(G, args.generator, args.seed))
    x, yaw, elev = (torch.cat(v) for v in zip(*parts))
    print(f"{len(x)} views in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    net = train_pose_net(x, yaw, elev, args.epochs, seed=args.seed, log=lambda m: print(m, flush=True))
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    made = (f"scripts/train_pose_regressor.py --network {args.network} --tracer {args.tracer} --tracer-resolution "
            f"{args.tracer_resolution} --generator {args.generator} --epochs {args.epochs} --seed {args.seed}")
    print("wrote", save_pose_net(net, args.out, weights_hash(G), made))
    within = 0
    for t in heldout_toys(12, G.img_resolution):
        truth = OrbitLabel.from_label(t.input.label, (0, 0, 0))
        best = pose_hypotheses(net, t.input.tensor())[0]
        dy = math.degrees((best.yaw - truth.yaw.item() + math.pi) % (2 * math.pi) - math.pi)
        de = best.elevation - pitch_to_elevation(truth.pitch.item())
        within += abs(dy) <= 5 and abs(de) <= 5
        print(f"{t.name:10s} regressor alone: yaw err {dy:+6.1f}, elevation err {de:+5.1f}")
    print(f"held-out toys within 5 deg (regressor alone): {within}/12")


if __name__ == "__main__":
    main()
