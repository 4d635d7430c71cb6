"""Triplane Studio: `python main.py [CHECKPOINT]` opens the studio; subcommands run headless.

Each subcommand lives in cli/<name>.py with `HELP`, `add_arguments(parser)` and `run(args) -> int`;
modules are imported only when their command runs, so `--help` and the studio start fast. The process
settings (allocator, OpenMP wait policy) come with the first `import core` (core/__init__.py).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

PROG = "triplane-studio" if os.path.basename(sys.argv[0]) == "triplane-studio" else "main.py"
"""How the user started us (the console script or the checkout's main.py), for usage lines."""
COMMANDS = ("train", "dataset", "render", "video", "mesh", "invert", "export", "info", "bench", "serve")
PACKAGES = ("core", "app", "cli", "training", "remote")
"""Our top-level packages; `training` is also the name of the original EG3D's package."""


def foreign_package() -> str | None:
    """One line naming the first of PACKAGES that Python would import from somewhere other than beside this
    file (another project's package earlier on sys.path, e.g. an EG3D checkout on PYTHONPATH); None if none."""
    home = Path(__file__).resolve().parent
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        found = Path(spec.origin).resolve().parent if spec is not None and spec.origin else None
        if found != home / name:
            return (f"Python imports the package '{name}' from {found or 'nowhere'}, not Triplane Studio's "
                    f"{home / name}: another project's '{name}' (the original EG3D's `training`?) comes first on "
                    "the Python path; take it off PYTHONPATH or use a separate environment")
    return None


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (`error: argument --psi: ... (main.py render --help)`, exit 2), like every
    other user error, without argparse's usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _studio_parser() -> argparse.ArgumentParser:
    from cli.common import add_device_argument, float_in, int_in
    p = _Parser(
        prog=PROG, description="Triplane Studio: explore, train and export EG3D tri-plane GANs.",
        epilog="Headless commands: " + ", ".join(COMMANDS) + f" ({PROG} COMMAND --help).")
    p.add_argument("checkpoint", nargs="?", help="network pickle, .ckpt or training run dir (default: assets/)")
    p.add_argument("--screenshot", metavar="PNG", help="render the studio for --frames frames, save the window, exit")
    p.add_argument("--viewport", metavar="PNG", help="like --screenshot, but save only the viewport's pixels as "
                   "displayed (read back from GL; the frame is shown 1:1 when it fits the window)")
    p.add_argument("--frames", type=int_in(1, 100_000), default=60,
                   help="frames to run before --screenshot (default 60)")
    add_device_argument(p)
    p.add_argument("--connect", metavar="ws://HOST:PORT", help="attach to `main.py serve` on another machine: the "
                   "server renders and runs the exports (CHECKPOINT, if given, is a path below its served folder "
                   "or a local file to upload)")
    p.add_argument("--token-file", metavar="FILE", help="with --connect: the token file copied from the server "
                   "(default ~/.config/triplane-studio/serve.token)")
    view = p.add_argument_group("start view (same meaning and units as `main.py render`)")
    view.add_argument("--seed", type=int_in(0, 2**31 - 1), help="seed (default 0)")
    view.add_argument("--yaw", type=float_in(-360, 360), help="camera yaw offset in degrees, > 0 towards +x")
    view.add_argument("--pitch", type=float_in(-85, 85), help="camera pitch offset in degrees, > 0 = lower")
    view.add_argument("--fov", type=float_in(0, 179, open_lo=True), help="field of view in degrees "
                      "(default: the checkpoint's)")
    view.add_argument("--psi", type=float_in(-2, 2), help="truncation psi (default 0.7)")
    view.add_argument("--mode", choices=("image", "image_raw", "image_depth"),
                      help="shown image: super-resolved, raw neural rendering, or depth (grey, near = bright, "
                           "background of opacity < 0.5 black)")
    return p


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(f"cli.{name}")
    p = _Parser(prog=f"{PROG} {name}", description=module.HELP, epilog=getattr(module, "EXAMPLES", None),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    return p, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    problem = foreign_package()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
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
