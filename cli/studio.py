"""`python main.py [CHECKPOINT|RUN_DIR]`: open the studio; `--screenshot OUT.png` saves the window and exits."""
from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import pick_device
from core.errors import StudioError


def run(args: argparse.Namespace) -> int:
    """Open the studio window (one clear error line when there is no display)."""
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    if args.screenshot:
        out = Path(args.screenshot)
        if out.suffix.lower() != ".png":
            raise ValueError(f"--screenshot {out}: the file name must end in .png")
        if not out.parent.resolve().is_dir():
            raise StudioError(f"--screenshot {out}: directory {out.parent} does not exist")
    device = pick_device(args.device)
    from app.window import check_display
    check_display()
    from app.studio import Studio
    studio = Studio(args.checkpoint, device)
    try:
        studio.run(screenshot=args.screenshot, frames=args.frames)
    finally:
        studio.close()
    if args.screenshot:
        print(f"saved {args.screenshot}")
    return 0
