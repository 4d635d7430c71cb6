"""Shared pieces of the subcommands: device choice, output checks and one-line error reporting."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from core.errors import StudioError


def run_guarded(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; user errors become one line on stderr and exit code 2, Ctrl-C exit code 130."""
    try:
        return int(fn(args) or 0)
    except (StudioError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def pick_device(name: str | None = None):
    """'cpu', 'cuda', 'cuda:1' or None (CUDA when available) -> torch.device; clear error if unavailable."""
    import torch
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"--device {name}: CUDA is not available on this machine")
    return dev


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


def writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and check it is a writable directory, else raise a one-line error."""
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"cannot create output directory {d}: {e.strerror}") from None
    if not os.access(d, os.W_OK):
        raise StudioError(f"output directory {d} is not writable")
    return d
