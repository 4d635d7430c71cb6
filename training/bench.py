"""Training-step benchmark: the one place that builds a trainer for timing and times its steps.

    python -m training.bench [--presets tiny,shapenet,ffhq,afhq] [--batch 4] [--batch-gpu 2] [--steps 2]

`step_trainer` builds a Trainer of a preset (or the default model's recipe) on a small synthetic dataset at
the preset's resolution; `time_steps` times its steps. scripts/bench_train_step.py, scripts/gpu_check.py and
the tests call these two. From the command line each preset runs in its own process (so peak RSS is its
own): the first step runs all four phases (Gmain, Greg, Dmain, Dreg), later steps only the lazy-
regularisation-free ones, as in training. Prints one JSON line per preset: wall and CPU seconds per step
(CPU time, summed over threads, is less sensitive to other jobs on a shared machine), images/s, peak RSS
(and peak GPU memory on CUDA).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from core.bench import peak_rss_gb
from core.layers import set_precision
from training.config import preset
from training.loop import Trainer
from training.synthetic import SynthSettings, write_synthetic_dataset

RESOLUTION = {"ffhq": 512, "afhq": 512, "shapenet": 128, "tiny": 128}
RECIPES = {"default-model": ("tiny", {"d_cmax": 64, "gamma": 0.5})}
"""Named recipes on top of a preset: the default model's (assets/README.md)."""
PRECISIONS = ("fp32", "mixed", "bf16")
"""fp32: every block in float32; mixed: the recipe's float16 blocks (sr/d_num_fp16_res, float16 on CUDA
only); bf16: the recipe's blocks under bfloat16 autocast around the whole step (an experiment; training
does not use it)."""


def step_trainer(recipe: str, data_dir: Path, run_dir: Path, device: torch.device | str, batch: int,
                 batch_gpu: int | None = None, precision: str = "mixed", images: int | None = None,
                 family: str = "primitives", **overrides) -> Trainer:
    """A Trainer of `recipe` (a preset name or one of RECIPES) at its real resolution, on a synthetic dataset
    of `images` images (default: one batch) written to `data_dir`; metrics and grids are off."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    name, recipe_overrides = RECIPES.get(recipe, (recipe, {}))
    settings = SynthSettings(family=family) if family != "primitives" else SynthSettings(kinds=("box",),
                                                                                         max_prims=1)
    data = write_synthetic_dataset(Path(data_dir), images or max(batch, 4), RESOLUTION[name], seed=0,
                                   settings=settings)
    opts = preset(name, **{"batch": batch, "batch_gpu": batch_gpu, "kimg": 1000, "swd_images": 0,
                           "grid_size": (1, 1), **recipe_overrides, **overrides})
    trainer = Trainer(data, Path(run_dir), opts, torch.device(device))
    if precision == "fp32":
        for net in (trainer.G, trainer.D, trainer.G_ema):
            set_precision(net, "fp32")
    return trainer


def time_steps(trainer: Trainer, steps: int, warmup: int = 0, max_seconds: float = math.inf,
               bf16_autocast: bool = False) -> dict:
    """Run `warmup` untimed steps, then up to `steps` timed ones (fewer once `max_seconds` have passed).

    Returns wall and process-CPU seconds per step, images/s over the timed steps, whether the last losses
    were finite, the activation dtypes seen and the peak memory (RSS; GPU on CUDA)."""
    device = trainer.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16_autocast else contextlib.nullcontext()
    dtypes: set[str] = set()

    def record(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            dtypes.add(str(output.dtype).removeprefix("torch."))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    hooks = [m.register_forward_hook(record) for net in (trainer.G, trainer.D) for m in net.modules()]
    stats: dict[str, float] = {}
    try:
        with autocast:
            for _ in range(warmup):
                stats = trainer.step()
            sync()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            wall, cpu = [], []
            start = time.perf_counter()
            while len(wall) < steps and time.perf_counter() - start < max_seconds:
                t0, c0 = time.perf_counter(), time.process_time()
                stats = trainer.step()
                sync()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    finally:
        for h in hooks:
            h.remove()
    batch = trainer.opts.batch
    out = {"batch": batch, "steps": len(wall), "step_s": [round(t, 3) for t in wall],
           "step_cpu_s": [round(t, 3) for t in cpu],
           "images_per_s": round(batch * len(wall) / sum(wall), 2) if wall else None,
           "losses_finite": all(math.isfinite(v) for v in stats.values()),
           "activation_dtypes": sorted(dtypes),
           "peak_rss_gb": round(peak_rss_gb(), 2)}
    if device.type == "cuda":
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    return out


def bench_one(recipe: str, batch: int, batch_gpu: int | None, steps: int, device: str, precision: str) -> dict:
    """Time `steps` training steps of one recipe in this process (the first runs every phase)."""
    import tempfile
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="trainbench-") as tmp:
        trainer = step_trainer(recipe, Path(tmp) / "data", Path(tmp) / "run", device, batch, batch_gpu, precision)
        try:
            timing = time_steps(trainer, steps, bf16_autocast=precision == "bf16")
        finally:
            trainer.close()
    after_first = timing["step_s"][1:]
    return {"recipe": recipe, "resolution": RESOLUTION[RECIPES.get(recipe, (recipe,))[0]], "device": device,
            "batch_gpu": batch_gpu, "precision": precision, "threads": torch.get_num_threads(), **timing,
            "images_per_s_after_first": round(batch * len(after_first) / sum(after_first), 3) if after_first
            else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,shapenet,ffhq,afhq",
                   help=f"comma-separated presets or recipes ({', '.join(RECIPES)})")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batch-gpu", type=int, default=2)
    p.add_argument("--steps", type=int, default=2, help="steps per preset (the first runs every phase)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=PRECISIONS, default="mixed",
                   help="fp32, mixed (the recipe's float16 blocks; float16 only on CUDA) or bf16 autocast")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(bench_one(args.one, args.batch, args.batch_gpu, args.steps, args.device, args.precision)),
              flush=True)
        return 0
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = 0
    for name in args.presets.split(","):
        cmd = [sys.executable, "-m", "training.bench", "--one", name, "--batch", str(args.batch),
               "--batch-gpu", str(args.batch_gpu), "--steps", str(args.steps), "--device", args.device,
               "--precision", args.precision]
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
        if r.returncode:
            print(json.dumps({"preset": name, "error": r.stderr.strip().splitlines()[-1:]}), flush=True)
            code = 1
        else:
            print(r.stdout.strip().splitlines()[-1], flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
