"""Shape diversity of a model: mean pairwise IoU of the density occupancy of its seeds.

Reads the density volumes that `python main.py mesh --volume npy` writes (DIR/seedNNNN.npy, raw density
over the box) and reports, for every pair of seeds, the IoU of {density > level}. Near 1 means every
seed has the same shape (mode collapse); the default model's target is a mean of at most 0.40.

    python main.py mesh assets/default_model.ckpt --seeds 0-11 --volume npy --out shapes
    python -m scripts.occupancy_iou shapes --level 10
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np


def pairwise_iou(volumes: list[np.ndarray], level: float) -> np.ndarray:
    """IoU of the occupancy {v > level} for every pair (i < j), in itertools.combinations order."""
    occ = [v > level for v in volumes]
    return np.array([(a & b).sum() / max(1, (a | b).sum()) for a, b in itertools.combinations(occ, 2)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="folder with mesh --volume npy outputs (seed*.npy)")
    p.add_argument("--level", type=float, default=10.0, help="density level of the surface (default 10)")
    args = p.parse_args()
    files = sorted(args.folder.glob("seed*.npy"))
    if len(files) < 2:
        raise SystemExit(f"error: {args.folder} holds {len(files)} seed*.npy volumes; need at least 2")
    volumes = [np.load(f, allow_pickle=False) for f in files]
    iou = pairwise_iou(volumes, args.level)
    fill = [float((v > args.level).mean()) for v in volumes]
    print(f"{len(files)} seeds, {len(iou)} pairs, level {args.level:g}: mean IoU {iou.mean():.3f} "
          f"(min {iou.min():.3f}, max {iou.max():.3f}); occupied fraction per seed "
          f"{min(fill):.3f}-{max(fill):.3f}")


if __name__ == "__main__":
    main()
