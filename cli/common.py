"""Shared pieces of the subcommands: argument types, device choice, output checks, one-line error reporting
and signals (Ctrl-C and SIGTERM stop a command promptly, and its atomic writers remove their temp files)."""
from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core import interrupts
from core.errors import StudioError, one_line

if TYPE_CHECKING:  # annotations only: the commands import torch when they run, not at --help
    import torch

    from core.latents import SavedLatent
    from core.triplane import TriPlaneGenerator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that `finally` blocks and atomic writers clean up."""


_pending: type[KeyboardInterrupt] | None = None
REPEAT_S = 0.25
"""An interrupt that some library swallows (trimesh's optional imports catch BaseException) is raised
again after this long, until the command has stopped."""


def _on_signal(signum: int, frame) -> None:
    global _pending
    interrupts.record(signum)
    _pending = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    signal.setitimer(signal.ITIMER_REAL, REPEAT_S)
    raise _pending()


def _on_alarm(signum: int, frame) -> None:
    if _pending is None or (frame is not None and frame.f_code is run_guarded.__code__):
        return  # the command has stopped, or run_guarded is stopping it
    signal.setitimer(signal.ITIMER_REAL, REPEAT_S)
    raise _pending()


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_alarm)


def out_of_memory(e: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, or a RuntimeError saying so (CUDA, or the CPU allocator's)."""
    if isinstance(e, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return (oom is not None and isinstance(e, oom)) or (
        isinstance(e, RuntimeError) and any(s in str(e).lower() for s in ("out of memory", "can't allocate memory")))


def _memory_hint(args: argparse.Namespace) -> str:
    settings = [f"--{name}" for name in ("batch", "res", "grid", "views")
                if getattr(args, name, None) is not None and not isinstance(getattr(args, name), bool)]
    if getattr(args, "config", None) is not None:
        settings.append("--config (a smaller preset)")
    return f"lower {', '.join(settings)}" if settings else "use a smaller model or free some memory"


def run_guarded(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; user errors become one line on stderr and exit code 2, out-of-memory one line naming
    the settings to lower (exit 3), Ctrl-C exit code 130, SIGTERM 143."""
    global _pending
    _install_signal_handlers()
    try:
        try:
            return int(fn(args) or 0)
        finally:  # the interrupt has arrived (or was handled by fn): stop raising it again
            _pending = None
            if threading.current_thread() is threading.main_thread():
                signal.setitimer(signal.ITIMER_REAL, 0)
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated) or interrupts.received() == signal.SIGTERM
        print("terminated" if term else "interrupted", file=sys.stderr)
        return 143 if term else 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): stop quietly, like other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush must not fail
        return 141
    except (StudioError, ValueError, OSError) as e:
        print(f"error: {one_line(e, 400)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        print(f"error: out of memory ({one_line(e, 120)}); {_memory_hint(args)}", file=sys.stderr)
        return 3


def pick_device(name: str | None = None):
    """'cpu', 'cuda', 'cuda:1' (as `device_name` checked it) or None (CUDA when available) -> torch.device;
    clear error if unavailable."""
    import torch
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise StudioError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def device_name(text: str) -> str:
    """argparse type: 'cpu', 'cuda' or 'cuda:N'."""
    if not re.fullmatch(r"cpu|cuda(:\d{1,2})?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text[:40]!r}")
    return text


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_name, help="cpu, cuda or cuda:N (default: cuda when available)")


def add_source_arguments(p: argparse.ArgumentParser, seeds_example: str, out: str, neural_res: bool = True) -> None:
    """What render, video and mesh draw: the network, --seeds or --latent, --out, truncation, the FOV,
    (with `neural_res`) the neural rendering resolution, and --device. Ranges are checked at parse time."""
    p.add_argument("network", help="network pickle, .ckpt file or training run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--seeds", type=seed_list, help=f"seeds, e.g. {seeds_example}")
    src.add_argument("--latent", metavar="NPZ", help="a saved latent (invert's latent.npz, or one saved in the "
                     "studio's Latent panel) instead of seeds")
    p.add_argument("--out", required=True, metavar=out, help="output directory (created if needed)" if out == "DIR"
                   else f"output file (.{out.lower()})")
    p.add_argument("--psi", type=float_in(-10, 10), default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--cutoff", type=int_in(0, 64), default=None, help="truncate only the first N ws (default: all)")
    p.add_argument("--fov", type=float_in(0, 179, open_lo=True), help="camera field of view in degrees "
                   "(default: the checkpoint's; 18.837 for EG3D's)")
    if neural_res:
        p.add_argument("--res", type=int_in(16, 1024), default=None,
                       help="neural rendering resolution (default: the model's, e.g. 128)")
    add_device_argument(p)


def add_depth_mask_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth-mask", action=argparse.BooleanOptionalAction, default=True,
                   help="depth images: pixels of opacity < 0.5 are background, drawn as the far end "
                        "(black) and left out of the min-max range (default on; --no-depth-mask: every pixel)")


def read_source(args: argparse.Namespace) -> tuple[list[int], SavedLatent | None]:
    """-> (seeds, latent): the --seeds ([0] with --latent) and the --latent file (or None), read before the
    network loads so that a bad file fails fast."""
    from core.latents import load_latent
    return args.seeds or [0], (load_latent(args.latent) if args.latent else None)


def open_generator(args: argparse.Namespace, latent: SavedLatent | None = None
                   ) -> tuple[TriPlaneGenerator, torch.Tensor | None]:
    """-> (G on --device, the latent's ws on G's device or None): the latent's noise maps go into G."""
    from core.checkpoint import load_generator
    from core.latents import apply_latent
    G = load_generator(args.network, pick_device(args.device))
    return G, (apply_latent(G, latent) if latent is not None else None)


def seed_list(text: str) -> list[int]:
    """argparse type: a seed list like '0,3-5' -> its seeds (`core.latents.parse_seeds` and its limits)."""
    from core.latents import parse_seeds
    try:
        return parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def grid_spec(max_cells: int = 64) -> Callable[[str], str]:
    """argparse type: 'COLUMNSxROWS' with at most `max_cells` cells (kept as text)."""
    def parse(text: str) -> str:
        m = re.fullmatch(r"\s*(\d{1,4})\s*[xX]\s*(\d{1,4})\s*", text)
        if not m or int(m[1]) < 1 or int(m[2]) < 1:
            raise argparse.ArgumentTypeError(f"expected COLUMNSxROWS like 2x2, got {text[:40]!r}")
        if int(m[1]) * int(m[2]) > max_cells:
            raise argparse.ArgumentTypeError(f"at most {max_cells} cells, got {text.strip()}")
        return text
    return parse


def angle_range(lo: float, hi: float) -> Callable[[str], str]:
    """argparse type: 'MIN,MAX' in degrees, finite, lo <= MIN <= MAX <= hi (kept as text)."""
    def parse(text: str) -> str:
        try:
            a, b = (float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX in degrees, got {text[:40]!r}") from None
        if not (math.isfinite(a) and math.isfinite(b) and lo <= a <= b <= hi):
            raise argparse.ArgumentTypeError(f"expected {lo:g} <= MIN <= MAX <= {hi:g}, got {text[:40]}")
        return text
    return parse


def writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and check it is a writable directory, else raise a one-line error.

    Also removes hidden temp files that a run killed hard (SIGKILL) left there (see core.fileio)."""
    from core.fileio import remove_stale_temps
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"cannot create output directory {d}: {e.strerror}") from None
    if not os.access(d, os.W_OK):
        raise StudioError(f"output directory {d} is not writable")
    remove_stale_temps(d)
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
