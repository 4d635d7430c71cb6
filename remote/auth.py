"""The server's access token: 128 random bits in a file only its owner can read.

`serve` creates the file (mode 0600) when it is missing; the client reads the same file (copied to the
laptop, e.g. with scp). Tokens are compared in constant time (hmac.compare_digest).
"""
from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from core.errors import StudioError

TOKEN_BYTES = 16
"""128 bits."""
MIN_TOKEN_CHARS = 2 * TOKEN_BYTES


def default_token_file() -> Path:
    """~/.config/triplane-studio/serve.token (XDG_CONFIG_HOME when set)."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "triplane-studio" / "serve.token"


def create_token_file(path: str | os.PathLike) -> str:
    """Write a new random token to `path`, created with mode 0600 (never replacing an existing file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(TOKEN_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as e:
        raise StudioError(f"cannot create token file {path}: {e.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_token_file(path: str | os.PathLike, *, private: bool = True) -> str:
    """The token stored in `path`. With `private` (the server), a file that others can read or that is
    not a regular file is refused, as ssh refuses such keys."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise StudioError(f"token file {path} is not a regular file")
        if private and os.name == "posix" and info.st_mode & 0o077:
            raise StudioError(f"token file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}): "
                              f"chmod 600 {path}")
        if info.st_size > 4096:
            raise StudioError(f"token file {path} is too large to hold a token")
        token = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        raise StudioError(f"token file {path}: no such file") from None
    except OSError as e:
        raise StudioError(f"cannot read token file {path}: {e.strerror}") from None
    if len(token) < MIN_TOKEN_CHARS or not token.isascii() or not token.isprintable() or " " in token:
        raise StudioError(f"token file {path} must hold one token of at least {MIN_TOKEN_CHARS} characters")
    return token


def server_token(path: str | os.PathLike) -> tuple[str, bool]:
    """(token, created): the token in `path`, or a new one written there when the file is missing."""
    if not os.path.lexists(path):
        return create_token_file(path), True
    return read_token_file(path), False


def same_token(given: object, expected: str) -> bool:
    """Constant-time comparison (the time does not depend on where the strings differ)."""
    if not isinstance(given, str) or not given.isascii():
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
