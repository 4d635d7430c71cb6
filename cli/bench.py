"""Benchmark the generator stages on a random ffhq512-128-size model."""
from __future__ import annotations

import argparse
import datetime

from cli.common import add_device_argument, pick_device

HELP = "Benchmark mapping, backbone, rendering, SR and preview settings on an ffhq512-128-size model."
EXAMPLES = """examples:
  python main.py bench
  python main.py bench --repeats 5 --bf16
  python main.py bench --device cuda"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3, help="timed runs per scenario (median reported; default 3)")
    p.add_argument("--bf16", action="store_true", help="also time the optional bfloat16 autocast path")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from core.bench import BASELINE, machine_description, run_benchmarks
    device = pick_device(args.device)
    print(f"{datetime.date.today()} on {machine_description(device)} ({device})")
    results = run_benchmarks(device, repeats=max(1, args.repeats), bf16=args.bf16)
    if device.type == "cpu":
        print("\n| scenario | ours (s) | original (s) | speed-up | target (s) |\n|---|---|---|---|---|")
        for name, (orig, target) in BASELINE.items():
            if name in results:
                ours = results[name]
                print(f"| {name} | {ours:.3f} | {orig:.2f} | {orig / ours:.1f}x | {target or '–'} |")
        print(f"| peak RSS | {results['peak RSS GB']:.2f} GB | 1.79 GB | | ≤ 1.79 GB |")
    return 0
