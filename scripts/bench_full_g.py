"""Time a full G(z,c) at ffhq512-128 size the way a notebook or script uses the library.

    python -m scripts.bench_full_g [--repeats 3]
    TRIPLANE_KEEP_FREED_MEMORY=0 python -m scripts.bench_full_g      # without the allocator setting

Prints one JSON line: median wall and process-CPU seconds after one warm-up, whether the allocator
setting was in effect, and the 1-minute load average before and after (on a shared machine the CPU
time is the steadier figure). Compare with the
'full G(z,c)' row of `python main.py bench`, run alternately on the same machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    from core import memory  # noqa: I001  (first: `import core` sets the OpenMP wait policy before torch loads it)
    import torch
    from core.bench import bench_generator
    from core.cameras import frontal_label

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    G = bench_generator("ffhq512", "cpu")
    z = torch.randn(1, 512)
    c = frontal_label(G.options, device="cpu")
    wall, cpu = [], []
    with torch.no_grad():
        for i in range(args.repeats + 1):  # the first call warms up
            t, p = time.perf_counter(), time.process_time()
            G(z, c)
            if i:
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - p)
    print(json.dumps({"full_G_wall_s": round(statistics.median(wall), 3),
                      "full_G_cpu_s": round(statistics.median(cpu), 3), "allocator_setting": memory._applied,
                      "threads": torch.get_num_threads(), "load_before": load_before,
                      "load_after": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
