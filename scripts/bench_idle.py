"""Idle cost of the studio: CPU used by the studio process while it sits at rest (frame refined, no
input), as a fraction of one core, with the idle wait on and (--compare) off.

    xvfb-run -a -s "-screen 0 1440x900x24" .venv/bin/python -m scripts.bench_idle [--seconds 20] [--compare]

Only the studio process is measured (time.process_time over all its threads); the X server's own
work is not included, but llvmpipe (Mesa's software GL under Xvfb) draws inside the studio process, so
drawing is. Runs the default model on the CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def measure(seconds: float, wait: bool) -> tuple[float, float]:
    """(CPU fraction of one core, UI frames per second) at rest over `seconds`."""
    from app.studio import Studio
    with tempfile.TemporaryDirectory() as settings:
        studio = Studio(None, settings_dir=Path(settings))
        try:
            start = time.monotonic()
            while not studio.idle:
                if time.monotonic() - start > 300:
                    raise SystemExit("the studio did not come to rest within 300 s")
                studio.step()
            studio.wait_when_idle = wait
            cpu0, wall0, frames0 = time.process_time(), time.monotonic(), studio.frame_count
            studio.run(seconds=seconds)
            wall = time.monotonic() - wall0
            return (time.process_time() - cpu0) / wall, (studio.frame_count - frames0) / wall
        finally:
            studio.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--compare", action="store_true", help="also measure with the idle wait off")
    args = p.parse_args()
    cases = [("idle wait on", True)] + ([("idle wait off (redraw every frame)", False)] if args.compare else [])
    for name, wait in cases:
        cpu, fps = measure(args.seconds, wait)
        print(f"{name}: {cpu * 100:.1f}% of one core, {fps:.1f} UI frames/s over {args.seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
