"""Training-step benchmark of the presets at their real sizes: `python -m training.bench`.

Each preset runs in its own process (so peak RSS is its own) on a small synthetic dataset at the
preset's resolution (512² for ffhq/afhq, 128² for shapenet and tiny): the first step runs all four
phases (Gmain, Greg, Dmain, Dreg), later steps only the lazy-regularisation-free ones, as in training.
Prints one JSON line per preset: wall and CPU seconds per step (CPU time, summed over threads, is
less sensitive to other jobs on a shared machine), images/s, peak RSS (and peak GPU memory on CUDA).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESOLUTION = {"ffhq": 512, "afhq": 512, "shapenet": 128, "tiny": 128}


def bench_one(preset_name: str, batch: int, batch_gpu: int, steps: int, device: str, precision: str) -> dict:
    """Time `steps` training steps of one preset in this process."""
    import torch

    from training.config import preset
    from training.loop import Trainer
    from training.synthetic import SynthSettings, write_synthetic_dataset

    torch.manual_seed(0)
    dev = torch.device(device)
    with tempfile.TemporaryDirectory(prefix="trainbench-") as tmp:
        res = RESOLUTION[preset_name]
        data = write_synthetic_dataset(Path(tmp) / "data", max(batch, 4), res, seed=0,
                                       settings=SynthSettings(kinds=("box",), max_prims=1))
        opts = preset(preset_name, batch=batch, batch_gpu=batch_gpu, kimg=1, swd_images=0, grid_size=(1, 1))
        trainer = Trainer(data, Path(tmp) / "run", opts, dev)
        times, cpu = [], []
        autocast = precision == "bf16"
        for _ in range(steps):
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                stats = trainer._step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        trainer.close()
    out = {"preset": preset_name, "resolution": res, "batch": batch, "batch_gpu": batch_gpu, "device": device,
           "precision": precision, "step_s": [round(t, 2) for t in times],
           "step_cpu_s": [round(t, 2) for t in cpu],
           "images_per_s_after_first": round(batch * (steps - 1) / sum(times[1:]), 3) if steps > 1 else None,
           "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
           "losses_finite": all(math.isfinite(v) for v in stats.values()),
           "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 30, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny,shapenet,ffhq,afhq", help="comma-separated presets")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batch-gpu", type=int, default=2)
    p.add_argument("--steps", type=int, default=2, help="steps per preset (the first runs every phase)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: torch.autocast around the step (an experiment; training uses fp32)")
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
