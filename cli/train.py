"""`main.py train`: train an EG3D model on a posed dataset (CPU, one GPU, or torchrun)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = """Train an EG3D tri-plane GAN on a posed dataset (EG3D dataset.json format).

The run directory receives training_options.json, metrics.jsonl, image grids of G_ema and
network-snapshot-*.ckpt files (open them in the studio). --resume RUN_DIR continues a run from
its newest snapshot with optimizer state, schedules and random state."""

EXAMPLES = """examples:
  python main.py dataset synth --out data/shapes --count 3000 --res 128
  python main.py train --data data/shapes --out runs/tiny --config tiny --kimg 20 --snap 1
  python main.py train --resume runs/tiny --kimg 40
  torchrun --nproc_per_node 2 main.py train --data data/shapes --out runs/ddp --config tiny --batch 8"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from training.config import PRESETS
    p.add_argument("--data", help="dataset folder or zip (default when resuming: the run's dataset)")
    p.add_argument("--out", help="run directory (default when resuming: the resumed run)")
    p.add_argument("--config", default="tiny", choices=sorted(PRESETS), help="preset (default tiny)")
    p.add_argument("--kimg", type=float, help="stop after this many thousand images")
    p.add_argument("--snap", type=float, help="snapshot interval in kimg (fractions allowed)")
    p.add_argument("--tick", type=float, help="metrics-log interval in kimg")
    p.add_argument("--batch", type=int, help="total batch size over all processes")
    p.add_argument("--gamma", type=float, help="R1 regularisation weight")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--swd-images", type=int, help="images per set for the SWD metric (0 = off)")
    p.add_argument("--grid", metavar="WxH", help="image-grid size in images (default per config, e.g. 8x4)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest snapshot")
    from cli.common import add_device_argument
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from cli.common import pick_device, writable_dir
    from core.errors import DatasetError, StudioError
    from core.progress import TqdmProgress
    from training.config import TrainOptions, preset
    from training.loop import OPTIONS_FILE, list_snapshots, train

    overrides = dict(kimg=args.kimg, snap=args.snap, tick=args.tick, batch=args.batch, gamma=args.gamma,
                     seed=args.seed, swd_images=args.swd_images, grid_size=_grid(args.grid))
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / OPTIONS_FILE).exists():
            raise StudioError(f"--resume {run_dir}: not a training run directory (no {OPTIONS_FILE})")
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise StudioError("--resume continues in the run directory itself; leave out --out")
        opts = TrainOptions.load(run_dir / OPTIONS_FILE)
        for k in ("kimg", "snap", "tick", "swd_images", "grid_size"):
            if overrides[k] is not None:
                setattr(opts, k, overrides[k])
        data = args.data or _run_dataset(run_dir, list_snapshots(run_dir))
    else:
        if not args.data or not args.out:
            raise StudioError("--data and --out are required (or --resume RUN_DIR)")
        run_dir, data = Path(args.out), args.data
        if list_snapshots(run_dir):
            raise StudioError(f"{run_dir} already holds snapshots; use --resume {run_dir} or another --out")
        opts = preset(args.config, **overrides)
    if not Path(data).exists():
        raise DatasetError(f"{data}: no such dataset folder or zip")
    writable_dir(run_dir)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    progress = TqdmProgress("training", unit="img")
    try:
        last = train(data, run_dir, opts, device, resume=bool(args.resume), progress=progress)
    finally:
        progress.close()
    if last is not None:
        print(f"done: {last}")
    return 0


def _grid(text: str | None) -> tuple[int, int] | None:
    from core.imaging import parse_grid
    return None if text is None else parse_grid(text)


def _run_dataset(run_dir: Path, snapshots: list[Path]) -> str:
    """The dataset path recorded in the run's newest snapshot."""
    from core.checkpoint import load_checkpoint
    from core.errors import StudioError
    for snap in reversed(snapshots):
        training = load_checkpoint(snap).get("training", {})
        if "dataset" in training:
            return training["dataset"]
    raise StudioError(f"{run_dir}: cannot tell which dataset it used; pass --data")


