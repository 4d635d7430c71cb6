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


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi], else one line naming the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {value}")
        return value
    return parse


def float_in(lo: float, hi: float, *, open_lo: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float in [lo, hi] ((lo, hi] with open_lo); NaN and inf are refused."""
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < lo or value > hi or (open_lo and value == lo):
            bracket = "(" if open_lo else "["
            raise argparse.ArgumentTypeError(f"must be in {bracket}{lo}, {hi}], got {value}")
        return value
    return parse
