"""Time the Invert panel's camera check the way its jobs run it (app.invert_camera on a RenderEngine).

    python -m scripts.bench_camera_check [--estimate default|quick|none] [MODEL ...]

For each model (default: the bundled default model and tests/data/boxcyl_model.ckpt): the model's mean-w view
at a camera, first (mapping, backbone, render, SR) and after a slider move (planes cached), median of 5; then,
unless --estimate none, Estimate camera on the test model's seed 3 rendered at yaw +25, pitch -15 with the
estimator's default search or the tests' cheaper one. Prints one line per figure and the load average.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_MODEL = ROOT / "tests" / "data" / "boxcyl_model.ckpt"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=[str(ROOT / "assets" / "default_model.ckpt"), str(TEST_MODEL)])
    p.add_argument("--estimate", choices=("default", "quick", "none"), default="quick")
    args = p.parse_args()
    import torch

    from app.invert_camera import estimate_view, render_view
    from core.cameras import frontal_label
    from core.checkpoint import load_generator
    from core.engine import RenderEngine
    from core.images import seed_ws
    from core.imaging import save_png, to_uint8
    from core.progress import Progress
    print(f"load average before: {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}")
    for model in args.models:
        engine = RenderEngine(load_generator(model, "cpu"), "cpu")
        times = []
        for k in range(6):
            start = time.perf_counter()
            render_view(engine, 10.0 * k, -5.0)
            times.append(time.perf_counter() - start)
        moved = statistics.median(times[1:])
        print(f"{Path(model).name}: view first {times[0]:.2f} s, after a slider move {moved:.2f} s")
    if args.estimate == "none":
        return
    engine = RenderEngine(load_generator(TEST_MODEL, "cpu"), "cpu")
    G = engine.base_G
    with torch.no_grad():
        image = G.synthesis(seed_ws(G, 3), frontal_label(G.options, None, yaw=math.radians(25),
                                                        pitch=math.radians(-15)))["image"]
    search = None
    if args.estimate == "quick":
        sys.path.insert(0, str(ROOT / "tests"))
        from studio_helpers import quick_search
        search = quick_search()
    with tempfile.TemporaryDirectory() as folder:
        target = save_png(Path(folder) / "target.png", to_uint8(image[0].clamp(-1, 1)))
        start = time.perf_counter()
        yaw, pitch, _ = estimate_view(engine, target, None, Progress(), search)
    print(f"estimate ({args.estimate} search, {TEST_MODEL.name}): {time.perf_counter() - start:.1f} s, "
          f"yaw {yaw:+.1f} (true +25), pitch {pitch:+.1f} (true -15)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
