"""`main.py serve`: the render server for a studio on another machine (headless: no GL, GLFW or imgui)."""
from __future__ import annotations

import argparse

HELP = "Serve a checkpoint or a training run to a studio on another machine (WebSocket, token-protected)."
EXAMPLES = """examples:
  python main.py serve ffhq512-128.pkl
  python main.py serve runs/00003-toys --port 7861 --token-file ~/serve.token --device cuda:1

The server listens on 127.0.0.1 only; reach it through an SSH tunnel (printed at start). Clients must
present the token kept in --token-file (128 random bits, created with mode 0600 when missing; copy it to
the laptop). Clients may open checkpoints below the served folder (a checkpoint's folder, or the run
directory) or upload their own; exports are written below its exports/ subfolder. A run directory is
watched: new snapshots are reloaded and the curves and image grids are served. Ctrl-C stops the server."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cli.common import add_device_argument, float_in, int_in
    p.add_argument("network", help="network pickle, .ckpt file or training run directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 = every network, with a warning)")
    p.add_argument("--port", type=int_in(0, 65535), default=7860, help="TCP port (default 7860; 0 = any free)")
    p.add_argument("--token-file", metavar="FILE",
                   help="the access token (default ~/.config/triplane-studio/serve.token; created when missing)")
    p.add_argument("--idle-timeout", type=float_in(1, 86400), default=300.0, metavar="SECONDS",
                   help="close connections silent this long (default 300; the client pings every 5 s)")
    add_device_argument(p)


def _url_host(host: str) -> str:
    import socket
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    import threading
    from pathlib import Path

    from cli.common import pick_device
    from core.errors import StudioError
    from remote.auth import default_token_file, server_token
    from remote.server import Server, ServerConfig, serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    target = Path(args.network)
    if not target.exists():
        raise StudioError(f"{target}: no such file or directory")
    token_file = Path(args.token_file).expanduser() if args.token_file else default_token_file()
    token, created = server_token(token_file)
    if created:
        print(f"created token file {token_file} (mode 0600)", file=sys.stderr)
    if args.host in ("0.0.0.0", "::", ""):
        print(f"warning: --host {args.host} accepts connections from every network this machine is on; the token "
              "is the only protection and the traffic is not encrypted (an SSH tunnel to 127.0.0.1 is safer)",
              file=sys.stderr)
    server = Server(ServerConfig(target=target, token=token, device=pick_device(args.device), host=args.host,
                                 port=args.port, idle_timeout=args.idle_timeout))
    threading.Thread(target=_announce, args=(server, args.host, token_file), daemon=True).start()
    serve_forever(server)
    return 0


def _announce(server, host: str, token_file) -> None:
    """The one line a user needs, once the server listens: address, attach command, SSH tunnel."""
    if not server.started.wait(120):
        return
    port, url_host = server.port, _url_host(host)
    url = f"ws://{url_host}:{port}"
    print(f"serving {server.default.name} at {url} | attach: python main.py --connect {url} --token-file "
          f"{token_file} | from another machine: scp SERVER:{token_file} serve.token; ssh -fN -L "
          f"{port}:127.0.0.1:{port} SERVER; python main.py --connect ws://127.0.0.1:{port} --token-file serve.token",
          flush=True)
