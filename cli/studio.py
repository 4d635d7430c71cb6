"""`python main.py [CHECKPOINT|RUN_DIR]`: open the studio (optionally at a seed, view and mode given as
for `render`); `--screenshot OUT.png` saves the window and `--viewport OUT.png` the viewport, then exit."""
from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import pick_device
from core.errors import StudioError


def run(args: argparse.Namespace) -> int:
    """Open the studio window (one clear error line when there is no display)."""
    for option, value in (("--screenshot", args.screenshot), ("--viewport", args.viewport)):
        if value:
            out = Path(value)
            if out.suffix.lower() != ".png":
                raise ValueError(f"{option} {out}: the file name must end in .png")
            if not out.parent.resolve().is_dir():
                raise StudioError(f"{option} {out}: directory {out.parent} does not exist")
    device = pick_device(args.device)
    from app.window import check_display
    check_display()
    from app.state import StartView
    from app.studio import Studio
    start = StartView(seed=args.seed, yaw_deg=args.yaw, pitch_deg=args.pitch, fov_deg=args.fov, psi=args.psi,
                      mode=args.mode)
    studio = Studio(args.checkpoint, device, start=start)
    try:
        studio.run(screenshot=args.screenshot, frames=args.frames, viewport=args.viewport)
    finally:
        studio.close()
    for path in filter(None, (args.screenshot, args.viewport)):
        print(f"saved {path}")
    return 0
