"""Training steps of the default model's recipe with each CPU tri-plane sampler, side by side in one process.

    python -m scripts.bench_train_step [--rounds 6] [--steps 8]

One trainer (`tiny`, `--d-cmax 64 --gamma 0.5`, batch 4 = one of the two processes of the recipe's
`torchrun --nproc_per_node 2`, one thread) on a 16-image toys dataset, past the blur fade-in. Rounds of
`--steps` steps alternate between grid_sample (`renderer.grid_sample_triplane`) and the weighted gather
(`core.plane_gather`, the default on CPU), so both see the same machine load. Prints one JSON line:
images/s per round and their medians, by process CPU time (steadier on a shared machine) and by wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    import core  # noqa: F401,I001  (first: the allocator and OpenMP settings every entry point gets)
    import torch
    import core.renderer as renderer
    import core.triplane as triplane
    from training.bench import step_trainer, time_steps

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    samplers = {"grid_sample": renderer.grid_sample_triplane, "gather": renderer.sample_triplane}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        trainer = step_trainer("default-model", Path(tmp) / "data", Path(tmp) / "run", "cpu", batch=4, images=16,
                               family="toys", kimg=100)
        trainer.cur_nimg = int(trainer.opts.blur_fade_kimg * 1000)  # past the blur fade-in
        cpu = {k: [] for k in samplers}
        wall = {k: [] for k in samplers}
        for _ in range(args.rounds):
            for name, sampler in samplers.items():
                renderer.sample_triplane = triplane.sample_triplane = sampler
                timing = time_steps(trainer, args.steps, warmup=1)  # the warm-up settles the allocator
                cpu[name].append(timing["batch"] * timing["steps"] / sum(timing["step_cpu_s"]))
                wall[name].append(timing["images_per_s"])
        renderer.sample_triplane = triplane.sample_triplane = samplers["gather"]
        trainer.close()
    out = {"recipe": "tiny --d-cmax 64 --gamma 0.5, batch 4 per process, 1 thread",
           "images_per_cpu_s": {k: [round(v, 2) for v in vs] for k, vs in cpu.items()},
           "images_per_wall_s": {k: [round(v, 2) for v in vs] for k, vs in wall.items()},
           "median_images_per_cpu_s": {k: round(statistics.median(vs), 2) for k, vs in cpu.items()},
           "median_images_per_wall_s": {k: round(statistics.median(vs), 2) for k, vs in wall.items()},
           "ratio_cpu": round(statistics.median(cpu["gather"]) / statistics.median(cpu["grid_sample"]), 3),
           "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
