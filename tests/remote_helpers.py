"""Starting `main.py serve` subprocesses and talking to them as a client would: shared by the remote tests."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import DEVICE
from websockets.sync.client import ClientConnection, connect

from remote import protocol as P

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    proc: subprocess.Popen
    port: int
    line: str
    """The line `serve` printed on stdout."""
    log: Path
    """The server's stderr."""
    token: str
    token_file: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(target: Path, token_file: Path, log: Path, *args: str, port: int = 0) -> Served:
    """`main.py serve TARGET` on 127.0.0.1; returns once it printed its line (it then listens)."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve", str(target), "--port", str(port),
                                 "--token-file", str(token_file), "--device", str(DEVICE), *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
    deadline = time.monotonic() + 120
    line = ""
    while "serving" not in line:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start: {log.read_text()[-2000:]}")
        line = proc.stdout.readline()
    port = int(re.search(r"ws://127\.0\.0\.1:(\d+)", line)[1])
    return Served(proc, port, line.strip(), log, token_file.read_text().strip(), token_file)


def raw_client(served: Served, hello: dict | None = None) -> ClientConnection:
    """A bare WebSocket that said hello with the right token (or `hello`); welcomed unless `hello` is given."""
    ws = connect(served.url, compression=None, max_size=P.MAX_MESSAGE, open_timeout=10, close_timeout=2, legacy=True)
    ws.send(P.encode_text(hello or {"type": "hello", "protocol": P.PROTOCOL_VERSION, "token": served.token}))
    if hello is None:
        assert P.decode_text(ws.recv(timeout=30))["type"] == "welcome"
    return ws


def rss_of(pid: int) -> int:
    """Resident set size of a process in bytes (Linux)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
