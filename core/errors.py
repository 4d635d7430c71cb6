"""Exceptions that carry a one-line, user-facing message (printed by main.py without a traceback)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


class StudioError(Exception):
    """Base class: bad input or an environment problem the user can fix."""


class CheckpointError(StudioError):
    """A checkpoint file is unreadable, unsafe, or does not describe a generator we can build."""


class DatasetError(StudioError):
    """A dataset folder/zip or its dataset.json is malformed."""


def one_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type when it has no text, else the first line of the text
    (torch appends multi-line C++ stack traces to its messages), cut at `limit` characters."""
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else type(e).__name__
    return line if len(line) <= limit else line[:limit - 1] + "…"


@contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Whatever fails while reading the file `what` at `path` becomes one CheckpointError naming the file: a
    CheckpointError (prefixed with the path), running out of memory, or any other failure of damaged bytes."""
    try:
        yield
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read the {what}") from None
    except Exception as e:  # noqa: BLE001  damaged zips and pickles: BadZipFile, EOFError, struct.error...
        raise CheckpointError(f"{path} is not a readable {what} "
                              f"(truncated or corrupt: {type(e).__name__}: {one_line(e, 120)})") from None
