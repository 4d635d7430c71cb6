"""`main.py train`: train an EG3D model on a posed dataset (CPU, one GPU, or torchrun)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = """Train an EG3D tri-plane GAN on a posed dataset (EG3D dataset.json format).

The run directory receives training_options.json, metrics.jsonl, image grids of G_ema and
network-snapshot-*.ckpt files (open them in the studio). --resume RUN_DIR continues a run from
its newest snapshot with optimizer state, schedules and random state. SIGTERM or Ctrl-C stops within
seconds with a snapshot of the last completed step (exit 143 / 130); the same command plus --resume
RUN_DIR continues it."""

EXAMPLES = """examples:
  python main.py dataset synth --out data/shapes --count 3000 --res 128
  python main.py train --data data/shapes --out runs/tiny --config tiny --kimg 20 --snap 1
  python main.py train --resume runs/tiny --kimg 40
  python main.py train --data data/shapes32 --out runs/small --config tiny --sr-module none
  torchrun --nproc_per_node 2 main.py train --data data/shapes --out runs/ddp --config tiny --batch 8
  # the original's two-stage ffhq recipe: 64^2 neural rendering, then fine-tune at 128^2
  torchrun --nproc_per_node 8 main.py train --data ffhq.zip --out runs/ffhq64 --config ffhq --batch 32 --gamma 1
  torchrun --nproc_per_node 8 main.py train --data ffhq.zip --out runs/ffhq128 --config ffhq --batch 32 --gamma 1 \
      --init runs/ffhq64/network-snapshot-025000000.ckpt --neural_rendering_resolution_final 128 --kimg 2000
  # several machines (run on each; rank 0 reads --init/--resume files and sends them to the others):
  torchrun --nnodes 2 --node_rank N --nproc_per_node 8 --master_addr HOST0 --master_port 29500 \
      main.py train --data ffhq.zip --out runs/ffhq --config ffhq --batch 64 --batch-gpu 4"""


MAX_GRID_CELLS = 256
"""Images in a snapshot grid (the original's largest is 15x8 = 120)."""

RESUMABLE = ("kimg", "snap", "tick", "swd_images", "grid_size", "grid_fixed", "inception", "fid_images")
"""Options that --resume may change; the others are the run's recipe."""


def _bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_device_argument, float_in, grid_spec, int_in
    from core.superresolution import SR_CLASSES
    from training.config import AUG_MODES, PRESETS
    p.add_argument("--data", help="dataset folder or zip (default when resuming: the run's dataset)")
    p.add_argument("--out", help="run directory (default when resuming: the resumed run)")
    p.add_argument("--config", "--cfg", choices=sorted(PRESETS), help="preset (default tiny; when resuming: the run's)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest snapshot")
    p.add_argument("--init", metavar="NETWORK", help="start from a network pickle or .ckpt (G, D, G_ema and their "
                   "architecture); image counter at 0, no blur or pose-conditioning fade, no EMA ramp-up")
    p.add_argument("--resume-blur", "--resume_blur", dest="resume_blur", action="store_true", default=None,
                   help="with --init: keep the blur and pose-conditioning fades")
    g = p.add_argument_group("length and logging")
    g.add_argument("--kimg", type=float_in(0, 1e7, open_lo=True), help="stop after this many thousand images")
    g.add_argument("--snap", type=float_in(0, 1e7, open_lo=True), help="snapshot interval in kimg")
    g.add_argument("--tick", type=float_in(0, 1e7, open_lo=True), help="metrics-log interval in kimg")
    g.add_argument("--seed", type=int_in(0, 2**31 - 1), help="random seed")
    g.add_argument("--swd-images", type=int_in(0, 1 << 20), help="images per set for the SWD metric (0 = off)")
    g.add_argument("--inception", metavar="FILE", help="local FID Inception-v3 weights (pytorch-fid's "
                   "pt_inception-2015-12-05-6726825d.pth): FID and KID at each snapshot; nothing is downloaded")
    g.add_argument("--fid-images", type=int_in(2, 1 << 20), help="images per set for FID/KID (default 1000)")
    g.add_argument("--grid", metavar="WxH", type=grid_spec(MAX_GRID_CELLS),
                   help=f"image-grid size in images, at most {MAX_GRID_CELLS} (default: the config's on a GPU, "
                        "e.g. 15x8 for ffhq; a small grid on a CPU)")
    g = p.add_argument_group("batch and optimisation")
    g.add_argument("--batch", type=int_in(1, 16384), help="total batch size over all processes")
    g.add_argument("--batch-gpu", "--batch_gpu", dest="batch_gpu", type=int_in(1, 16384),
                   help="batch per process and pass; gradients accumulate up to --batch (lower it when out of memory)")
    g.add_argument("--gamma", type=float_in(0, 1e6), help="R1 regularisation weight")
    g.add_argument("--glr", type=float_in(0, 1, open_lo=True), help="G learning rate (0.0025)")
    g.add_argument("--dlr", type=float_in(0, 1, open_lo=True), help="D learning rate (0.002)")
    g.add_argument("--mirror", type=_bool, help="x-flip real images (image only, as the original; True/False)")
    g.add_argument("--aug", choices=AUG_MODES, help="augmentation: noaug, ada (adaptive) or fixed")
    g.add_argument("--p", dest="aug_p", type=float_in(0, 1), help="augmentation probability for --aug fixed")
    g.add_argument("--target", dest="ada_target", type=float_in(0, 1), help="ADA target for E[sign(D(real))] (0.6)")
    g.add_argument("--style_mixing_prob", type=float_in(0, 1), help="style-mixing probability (0)")
    g = p.add_argument_group("architecture (the original's names)")
    g.add_argument("--cbase", type=int_in(16, 1 << 20), help="channel base of G, D and SR (32768)")
    g.add_argument("--cmax", type=int_in(1, 8192), help="maximum channels (512)")
    g.add_argument("--d-cbase", dest="d_cbase", type=int_in(16, 1 << 20),
                   help="channel base of D only (default: --cbase; a wider D for small generators)")
    g.add_argument("--d-cmax", dest="d_cmax", type=int_in(1, 8192), help="maximum channels of D only (--cmax)")
    g.add_argument("--map-depth", "--map_depth", dest="map_depth", type=int_in(1, 16), help="G mapping layers (2)")
    g.add_argument("--mbstd-group", "--mbstd_group", dest="mbstd_group", type=int_in(1, 256),
                   help="minibatch-std group size (4)")
    g.add_argument("--sr-module", "--sr_module", dest="sr_module", choices=sorted(SR_CLASSES) + ["none"],
                   help="superresolution class (default by resolution; none = the neural rendering, resized)")
    g.add_argument("--sr_num_fp16_res", type=int_in(0, 8), help="SR blocks marked fp16 (conv clamp 256 if > 0)")
    g.add_argument("--d_num_fp16_res", type=int_in(0, 16), help="D blocks marked fp16 (conv clamp 256 if > 0)")
    g.add_argument("--decoder_lr_mul", type=float_in(0, 100, open_lo=True), help="decoder learning-rate multiplier")
    g = p.add_argument_group("EG3D schedules and regularisation (the original's names)")
    g.add_argument("--neural_rendering_resolution_initial", "--nrr-initial", dest="nrr_initial",
                   type=int_in(8, 1024), help="neural rendering resolution at the start (64)")
    g.add_argument("--neural_rendering_resolution_final", "--nrr-final", dest="nrr_final",
                   type=int_in(8, 1024), help="neural rendering resolution after the fade (default: no fade)")
    g.add_argument("--neural_rendering_resolution_fade_kimg", "--nrr-fade-kimg", dest="nrr_fade_kimg",
                   type=float_in(0, 1e7), help="kimg of the resolution fade (1000)")
    g.add_argument("--gen_pose_cond", type=_bool, help="condition G on the camera (True/False)")
    g.add_argument("--gpc_reg_prob", type=float_in(0, 1), help="final probability of swapping G's camera (0.5)")
    g.add_argument("--gpc_reg_fade_kimg", type=float_in(0, 1e7), help="kimg of the swapping fade (1000)")
    g.add_argument("--c-scale", "--c_scale", dest="c_scale", type=float_in(0, 1e3), help="camera scale in G (1)")
    g.add_argument("--density_reg", type=float_in(0, 1e3), help="density regularisation weight (0.25; 0 = off)")
    g.add_argument("--density_reg_every", type=int_in(1, 1000), help="density regularisation interval (4)")
    g.add_argument("--density_reg_p_dist", type=float_in(0, 10), help="density regularisation distance (0.004)")
    g.add_argument("--reg_type", choices=["l1"], help="density regularisation type (l1)")
    g.add_argument("--sr-consistency", dest="sr_consistency", type=float_in(0, 1e3),
                   help="ours, not the original's: weight in G's loss of |downsampled SR - raw| + SR values "
                        "outside the local range of the raw image (0 = off; against an SR rim or halo). Tested for "
                        "fine-tuning (--init); from scratch at 20 the toys run collapsed to one shape")
    g.add_argument("--blur_init_sigma", type=float_in(0, 1e3), help="initial blur of D's images (10)")
    g.add_argument("--blur_fade_kimg", type=float_in(0, 1e7), help="blur fade at batch 32, scaled by batch/32 (200)")
    g.add_argument("--disc_c_noise", type=float_in(0, 1e3), help="D camera noise in batch std units (0)")
    add_device_argument(p)


OPTION_NAMES = ("kimg", "snap", "tick", "seed", "swd_images", "inception", "fid_images", "batch", "batch_gpu",
                "gamma", "glr", "dlr",
                "mirror", "aug", "aug_p", "ada_target", "style_mixing_prob", "cbase", "cmax", "d_cbase",
                "d_cmax", "map_depth",
                "mbstd_group", "sr_module", "sr_num_fp16_res", "d_num_fp16_res", "decoder_lr_mul", "nrr_initial",
                "nrr_final", "nrr_fade_kimg", "gen_pose_cond", "gpc_reg_prob", "gpc_reg_fade_kimg", "c_scale",
                "density_reg", "density_reg_every", "density_reg_p_dist", "reg_type", "sr_consistency",
                "blur_init_sigma", "blur_fade_kimg", "disc_c_noise", "resume_blur")


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    import torch

    from cli.common import out_of_memory, pick_device
    from core import interrupts
    from core.errors import DatasetError, StudioError
    from core.imaging import parse_grid
    from core.progress import TqdmProgress
    from training.config import SR_NONE, TrainOptions, preset
    from training.loop import OPTIONS_FILE, list_snapshots, train

    overrides = {name: getattr(args, name) for name in OPTION_NAMES}
    overrides["grid_size"] = parse_grid(args.grid) if args.grid else None
    overrides["grid_fixed"] = True if args.grid else None
    if args.inception:
        overrides["inception"] = str(Path(args.inception).resolve())
    if overrides["sr_module"] == "none":
        overrides["sr_module"] = SR_NONE
    rank = int(os.environ.get("RANK", "0"))
    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise StudioError("--resume continues in the run directory itself; leave out --out")
        if (run_dir / OPTIONS_FILE).exists():
            opts = TrainOptions.load(run_dir / OPTIONS_FILE)
            _check_unchanged(opts, overrides, args)
        elif rank > 0 or (args.data and not list_snapshots(run_dir)):
            # another machine (the options and snapshot come from rank 0), or a job whose script always says
            # --resume and that was stopped before its run began: the command's own options
            opts = preset(args.config or "tiny", init=args.init, **overrides)
            if rank == 0:
                print(f"{run_dir} holds no run yet: starting it", file=sys.stderr, flush=True)
        else:
            raise StudioError(f"--resume {run_dir}: not a training run directory (no {OPTIONS_FILE})")
        for k in RESUMABLE:
            if overrides[k] is not None:
                setattr(opts, k, overrides[k])
        data = args.data or _run_dataset(run_dir, list_snapshots(run_dir))
    else:
        if not args.data or not args.out:
            raise StudioError("--data and --out are required (or --resume RUN_DIR)")
        run_dir, data = Path(args.out), args.data
        if list_snapshots(run_dir):
            raise StudioError(f"{run_dir} already holds snapshots; use --resume {run_dir} or another --out")
        opts = preset(args.config or "tiny", init=args.init, **overrides)
    if not Path(data).exists():
        raise DatasetError(f"{data}: no such dataset folder or zip")
    _check_writable(run_dir)
    if opts.inception and rank == 0:  # a wrong file fails before the run directory exists
        from training.fid import load_inception
        load_inception(opts.inception)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    progress = TqdmProgress("training", unit="img")
    try:
        last = train(data, run_dir, opts, device, resume=bool(args.resume), progress=progress)
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        raise StudioError(_oom_message(opts)) from e
    finally:
        progress.close()
    signum = interrupts.received()
    if signum is not None:  # the trainer stopped early and saved the last completed step
        where = f"saved {last}" if last is not None else "no snapshot written (this process is not rank 0)"
        print(f"stopped by {interrupts.name(signum)}: {where}; continue with the same command plus "
              f"--resume {run_dir}", file=sys.stderr, flush=True)
        return interrupts.exit_code(signum)
    if last is not None:
        print(f"done: {last}")
    return 0


def _check_unchanged(opts, overrides: dict, args: argparse.Namespace) -> None:
    """A resumed run keeps its recipe: options given again with the run's values are accepted (a cluster
    restarts a job with the same command plus --resume); a real change is refused naming both values."""
    from core.errors import StudioError
    given = {k: v for k, v in overrides.items() if v is not None and k not in RESUMABLE}
    if args.config is not None:
        given["config"] = args.config
    if args.init is not None:
        given["init"] = args.init
    for name, new in given.items():
        old = getattr(opts, name)
        if name == "init" and old is not None and Path(old).resolve() == Path(new).resolve():
            continue
        if new != old:
            raise StudioError(f"--{name.replace('_', '-')} cannot change when resuming: run has {_shown(old)}, "
                              f"command says {_shown(new)} (a run keeps its recipe; only --kimg, --snap, --tick, "
                              "--swd-images, --grid, --inception and --fid-images can change)")


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _oom_message(opts) -> str:
    per_pass = opts.batch_gpu or opts.batch
    return (f"out of memory during a training step; lower --batch-gpu (now {per_pass} images per pass): "
            f"gradients accumulate up to --batch {opts.batch}")


def _check_writable(run_dir: Path) -> None:
    """The run directory, or the folder it will be created in, must be writable (nothing is created here)."""
    import os

    from core.errors import StudioError
    probe = run_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise StudioError(f"cannot create run directory {run_dir}: {probe} is not a folder")
    if not os.access(probe, os.W_OK):
        raise StudioError(f"run directory {run_dir} is not writable ({probe} is read-only)")


def _run_dataset(run_dir: Path, snapshots: list[Path]) -> str:
    """The dataset path recorded in the run's newest snapshot."""
    from core.checkpoint import load_checkpoint
    from core.errors import CheckpointError, StudioError
    for snap in reversed(snapshots):
        try:
            training = load_checkpoint(snap).get("training", {})
        except CheckpointError:
            continue  # a damaged newest snapshot: the trainer falls back to an older one and says so
        if "dataset" in training:
            return training["dataset"]
    raise StudioError(f"{run_dir}: cannot tell which dataset it used; pass --data")
