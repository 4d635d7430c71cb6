"""`python main.py [CHECKPOINT|RUN_DIR]`: open the studio (optionally at a seed, view and mode given as
for `render`); `--screenshot OUT.png` saves the window and `--viewport OUT.png` the viewport, then exit.
`--connect ws://HOST:PORT` attaches the same studio to `main.py serve` (app.attached)."""
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
    if args.token_file and not args.connect:
        raise ValueError("--token-file is for --connect ws://HOST:PORT")
    device = pick_device(args.device)
    from app.window import check_display
    check_display()
    remote = None
    if args.connect:
        from app.attached import attach
        remote = attach(args.connect, args.token_file)
    from app.state import StartView
    from app.studio import Studio
    start = StartView(seed=args.seed, yaw_deg=args.yaw, pitch_deg=args.pitch, fov_deg=args.fov, psi=args.psi,
                      mode=args.mode)
    try:
        studio = Studio(args.checkpoint or (remote.url if remote else None), device, start=start, backend=remote)
    except BaseException:
        if remote is not None:
            remote.close()
        raise
    try:
        studio.run(screenshot=args.screenshot, frames=args.frames, viewport=args.viewport)
    finally:
        studio.close()
    for path in filter(None, (args.screenshot, args.viewport)):
        print(f"saved {path}")
    return 0
