"""The client's side of the connection: one WebSocket to `main.py serve`, kept open.

A thread connects, says hello with the token, then reads every message and hands it on, pinging every
`ping_s` for the round trip time. When the connection drops it reconnects, backing off up to
RECONNECT_MAX_S; a server that refuses the hello (wrong token, other protocol) ends the attempts.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect

from core.errors import StudioError
from remote import protocol as P

log = logging.getLogger(__name__)
PING_S = 5.0
RECONNECT_MAX_S = 5.0


class RemoteError(StudioError):
    """The server refused something, or the connection is not there."""


class Link:
    def __init__(self, url: str, token: str, *, name: str, reconnect: bool, ping_s: float,
                 on_attached: Callable[[dict, bool], None], on_message: Callable[[dict | bytes], None],
                 on_detached: Callable[[], None]):
        """`on_attached(welcome, first)` after each successful hello, `on_message(message)` for every
        message but pongs (text ones decoded), `on_detached()` when a connection ends; all on the link's
        thread."""
        self.url, self._token, self._name, self.reconnect, self._ping_s = url, token, name, reconnect, ping_s
        self._on_attached, self._on_message, self._on_detached = on_attached, on_message, on_detached
        self.status = "connecting"
        """connected | disconnected, reconnecting | refused | closed"""
        self.last_error = ""
        self.rtt_ms: float | None = None
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._send_lock = threading.Lock()
        self._last_ping = 0.0
        self._first = threading.Event()
        """Set after the first attempt ended: attached, refused or given up."""
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="remote-link", daemon=True)
        self._thread.start()

    def wait_attached(self, timeout: float) -> bool:
        return self._first.wait(timeout) and self.status == "connected"

    def send(self, data: str | bytes | dict) -> None:
        """Send a message (dicts as JSON); RemoteError when there is no connection."""
        ws = self._ws
        if ws is None:
            raise RemoteError(f"not connected to {self.url} ({self.status})")
        with self._send_lock:
            ws.send(P.encode_text(data) if isinstance(data, dict) else data)

    def send_quiet(self, data: str | bytes | dict) -> bool:
        """Send; False when there is no connection (the caller decides what that means)."""
        try:
            self.send(data)
            return True
        except (RemoteError, ConnectionClosed, OSError):
            return False

    def close(self) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.status = "closed"

    def _run(self) -> None:
        delay = 0.25
        while not self._closing:
            try:
                ws = connect(self.url, compression=None, max_size=P.MAX_MESSAGE, open_timeout=10,
                             ping_interval=20, ping_timeout=30, close_timeout=2)
            except (OSError, WebSocketException, TimeoutError) as e:  # refused, reset mid-handshake, ...
                self.last_error = f"{type(e).__name__}: {e}"
                if isinstance(e, InvalidURI) or not self.reconnect:
                    break
                self._wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            with ws:
                if not self._session(ws):
                    break
                delay = 0.25
        if self.status != "refused":
            self.status = "closed"
        self._first.set()

    def _session(self, ws: ClientConnection) -> bool:
        """Say hello, then read until the connection ends; False when the server refused us."""
        try:
            ws.send(P.encode_text({"type": "hello", "protocol": P.PROTOCOL_VERSION, "token": self._token,
                                   "client": self._name}))
            welcome = P.decode_text(ws.recv(timeout=30))
        except (ConnectionClosed, TimeoutError, P.ProtocolError):
            self.status, self.last_error = "refused", "the server closed the connection after hello (wrong token?)"
            return False
        if welcome.get("type") != "welcome":
            self.status, self.last_error = "refused", str(welcome.get("message", welcome))[:300]
            return False
        first = not self._first.is_set()
        self._ws, self.status, self._last_ping = ws, "connected", 0.0
        if not first:
            self.reconnects += 1
            log.info("reconnected to %s", self.url)
        self._on_attached(welcome, first)
        self._first.set()
        try:
            self._read(ws)
        except (ConnectionClosed, OSError) as e:
            self.last_error = f"connection lost: {e}"
        except Exception as e:  # a message we cannot handle: drop this connection, make a new one
            self.last_error = f"bad message from the server: {e}"
            log.warning("%s: %s", self.url, self.last_error, exc_info=not isinstance(e, P.ProtocolError))
        self._ws = None
        self.status = "closed" if self._closing else "disconnected, reconnecting"
        self._on_detached()
        return True

    def _read(self, ws: ClientConnection) -> None:
        while not self._closing:
            now = time.monotonic()
            if now - self._last_ping >= self._ping_s:
                self._last_ping = now
                self.send_quiet({"type": "ping", "t": now})
            try:
                data = ws.recv(timeout=min(1.0, self._ping_s))
            except TimeoutError:
                continue
            message = data if isinstance(data, bytes) else P.decode_text(data)
            if isinstance(message, dict) and message["type"] == "pong":
                if isinstance(message.get("t"), float):
                    self.rtt_ms = (time.monotonic() - message["t"]) * 1000
            else:
                self._on_message(message)

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._closing and time.monotonic() < end:
            time.sleep(0.05)
