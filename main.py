"""Triplane Studio: `python main.py [CHECKPOINT]` opens the studio; subcommands run headless.

Each subcommand lives in cli/<name>.py with `HELP`, `add_arguments(parser)` and `run(args) -> int`;
modules are imported only when their command runs, so `--help` and the studio start fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that spin while waiting starve the UI thread and other processes on small CPUs;
# sleeping waits cost little for our large tensor ops. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


PROG = "triplane-studio" if os.path.basename(sys.argv[0]) == "triplane-studio" else "main.py"
"""How the user started us (the console script or the checkout's main.py), for usage lines."""
COMMANDS = ("train", "dataset", "render", "video", "mesh", "export", "info", "bench")


def _studio_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Triplane Studio: explore, train and export EG3D tri-plane GANs.",
        epilog="Headless commands: " + ", ".join(COMMANDS) + f" ({PROG} COMMAND --help).")
    p.add_argument("checkpoint", nargs="?", help="network pickle, .ckpt or training run dir (default: assets/)")
    p.add_argument("--screenshot", metavar="PNG", help="render the studio for --frames frames, save the window, exit")
    p.add_argument("--frames", type=int, default=60, help="frames to run before --screenshot (default 60)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    return p


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(f"cli.{name}")
    p = argparse.ArgumentParser(prog=f"{PROG} {name}", description=module.HELP,
                                epilog=getattr(module, "EXAMPLES", None),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    return p, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from cli.common import run_guarded
    if argv and argv[0] in COMMANDS:
        parser, module = _command_parser(argv[0])
        args = parser.parse_args(argv[1:])
        return run_guarded(module.run, args)
    if argv and argv[0] in ("-h", "--help"):
        _studio_parser().print_help()
        print("\ncommands:")
        for name in COMMANDS:
            print(f"  {name:<8} {importlib.import_module(f'cli.{name}').HELP.splitlines()[0]}")
        return 0
    args = _studio_parser().parse_args(argv)
    from cli import studio
    return run_guarded(studio.run, args)


if __name__ == "__main__":
    sys.exit(main())
