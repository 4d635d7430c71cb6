"""Benchmark the generator stages on a random ffhq512-128-size model."""
from __future__ import annotations

import argparse
import datetime
import json

from cli.common import add_device_argument, float_in, int_in, pick_device

HELP = "Benchmark mapping, backbone, rendering, SR and preview settings on an ffhq512-128-size model."
EXAMPLES = """examples:
  python main.py bench
  python main.py bench --repeats 5 --bf16
  python main.py bench --device cuda
  python main.py bench --device cuda --modes fp32,bf16,bf16+graph,fp16+compile --json fps.json

--modes times the interactive frames instead (512² orbit frames from cached planes with SR, full
G(z,c), raw 128² frames; batch 1) under each mode: a precision (fp32, tf32, bf16, fp16) plus flags
joined by '+': graph (CUDA graph replay), compile (torch.compile), onechunk (all rays in one renderer
chunk). Each mode also reports its largest pixel difference from plain fp32."""


def _modes(text: str) -> list:
    from core.bench import FrameMode
    try:
        return [FrameMode.parse(m) for m in text.split(",") if m.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int_in(1, 1000), default=3,
                   help="timed runs per scenario (median reported; default 3)")
    p.add_argument("--bf16", action="store_true", help="also time the optional bfloat16 autocast path")
    p.add_argument("--modes", type=_modes, help="comma-separated frame modes, e.g. fp32,bf16+graph (see below)")
    p.add_argument("--model", choices=("ffhq512", "small"), default="ffhq512",
                   help="with --modes: ffhq512 (released size, default) or small (the tiny preset's shapes)")
    p.add_argument("--frames", type=int_in(1, 100000), default=100,
                   help="with --modes: timed frames per scenario (default 100)")
    p.add_argument("--seconds", type=float_in(0, 3600, open_lo=True), default=10.0,
                   help="with --modes: stop timing a scenario after this many seconds (default 10)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from core.bench import BASELINE, machine_description, run_benchmarks, run_frame_modes
    from core.fileio import atomic_path
    device = pick_device(args.device)
    header = f"{datetime.date.today()} on {machine_description(device)} ({device})"

    def save(results: dict) -> None:
        """Replace the JSON file whole, so that a run killed at any moment leaves valid JSON."""
        if args.json:
            with atomic_path(args.json) as tmp:
                tmp.write_text(json.dumps({"machine": header, "results": results}, indent=1))

    save({})  # an unwritable path fails now, not after minutes of measuring
    print(header)

    if args.modes:
        results = run_frame_modes(device, args.modes, model=args.model, frames=args.frames, seconds=args.seconds,
                                  on_update=save)
    else:
        results = run_benchmarks(device, repeats=args.repeats, bf16=args.bf16)
        if device.type == "cpu":
            print("\n| scenario | ours (s) | original (s) | speed-up | target (s) |\n|---|---|---|---|---|")
            for name, (orig, target) in BASELINE.items():
                if name in results:
                    ours = results[name]
                    print(f"| {name} | {ours:.3f} | {orig:.2f} | {orig / ours:.1f}x | {target or '–'} |")
            print(f"| peak RSS | {results['peak RSS GB']:.2f} GB | 1.79 GB | | ≤ 1.79 GB |")
    save(results)
    return 0
